/**
 * What the control plane does when its verification of the audit chain fails (issue 13): it records
 * `audit.verify_failed` (the first bad sequence number and why) and, in the same transaction, writes the
 * notification outbox rows itself — once per distinct break, however often the chain is verified and on however
 * many replicas.
 *
 * The one who broke the chain can write to the database, so nothing the database says may decide that the alert
 * was already sent. "Already sent" is an `audit.verify_failed` event carrying the break's fingerprint: an
 * HMAC-SHA256 of (first bad seq, reason, checkpoint, digest of the row found there) under a key derived from the
 * audit checkpoint key — a file, never in the database. A writer can insert a look-alike event, but not one with
 * the right fingerprint; and the outbox rows' keys are that fingerprint too, so rows pre-inserted to be "skipped
 * as duplicates" cannot take their place. Every failure is also logged (outside the database) by the caller.
 * A writer can still disable rules or delete outbox rows (docs/security.md): the log line stays.
 */
import { createHash, createHmac, hkdfSync, type KeyObject } from 'node:crypto';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { AuditEvent, PrismaClient } from '@pyreach/db';
import type { Actor } from './actor';
import { appendAudit, GENESIS_HASH, lockHead, type VerifyResult } from './audit';
import { enqueueVerifyFailure } from './notifications-outbox';

export const AUDIT_VERIFIER: Actor = { type: 'system', name: 'audit-verifier' };

export type BrokenChain = Extract<VerifyResult, { ok: false }>;

/** The fingerprint key: derived from the checkpoint signing key (so it lives where that key lives). */
export function fingerprintKeyOf(privateKey: KeyObject): Buffer {
  return Buffer.from(
    hkdfSync(
      'sha256',
      privateKey.export({ format: 'der', type: 'pkcs8' }),
      Buffer.alloc(0),
      'pyreach audit.verify_failed fingerprint v1',
      32,
    ),
  );
}

export interface VerifyAlert {
  /** False: this break was recorded before (by this or another replica); nothing new was written. */
  recorded: boolean;
  /** The `audit.verify_failed` event (new or earlier). */
  seq: bigint;
  fingerprint: string;
  /** Rules listing the event, and the outbox rows written for them (fewer: rows under these keys existed). */
  rules: number;
  written: number;
}

/**
 * The break's fingerprint: HMAC over what identifies it, including the row as it stands at the break. A chain
 * cut below a checkpoint is identified by that checkpoint alone: the events appended since (this alert's among
 * them) move where the chain ends, and must not make the same cut a new break at every verification.
 */
async function fingerprintOf(db: PrismaClient, key: Buffer, b: BrokenChain): Promise<string> {
  if (b.kind === 'cut')
    return createHmac('sha256', key)
      .update(canonicalJson({ kind: 'cut', checkpointSeq: b.checkpointSeq?.toString() ?? null }))
      .digest('hex');
  const at = await db.auditEvent.findFirst({ where: { seq: { gte: b.brokenAt } }, orderBy: { seq: 'asc' } });
  // Our own record of a cut sits at the cut's first seq; a checkpoint over that seq then calls it a rewrite. It
  // is the same break, told already: its fingerprint (the record's seal proves the verifier wrote it there).
  if (b.kind === 'rewritten' && at && at.seq === b.brokenAt && at.action === 'audit.verify_failed') {
    const d = at.data as { seal?: unknown; fingerprint?: unknown };
    if (typeof d.fingerprint === 'string' && typeof d.seal === 'string' && d.seal === sealOf(key, at))
      return d.fingerprint;
  }
  const row = at
    ? createHash('sha256')
        .update(canonicalJson({ ...at, seq: at.seq.toString(), at: at.at.toISOString() }))
        .digest('hex')
    : 'none';
  return createHmac('sha256', key)
    .update(
      canonicalJson({
        kind: b.kind,
        brokenAt: b.brokenAt.toString(),
        reason: b.reason,
        checkpointSeq: b.checkpointSeq?.toString() ?? null,
        row,
      }),
    )
    .digest('hex');
}

type SealedFields = Pick<
  AuditEvent,
  'seq' | 'prevHash' | 'action' | 'actorType' | 'actorName' | 'subjectType' | 'subjectId'
> & { data: unknown };

/** The verifier's MAC over one of its records: where it stands in the chain and all it says. */
function sealOf(key: Buffer, e: SealedFields): string {
  const { seal: _seal, ...data } = (e.data ?? {}) as Record<string, unknown>;
  return createHmac('sha256', key)
    .update(
      canonicalJson({
        seal: 'audit.verify_failed v1',
        seq: e.seq.toString(),
        prevHash: e.prevHash,
        action: e.action,
        actorType: e.actorType,
        actorName: e.actorName,
        subjectType: e.subjectType,
        subjectId: e.subjectId,
        data,
      }),
    )
    .digest('hex');
}

/**
 * Records a failed verification: `audit.verify_failed` with its outbox rows, unless an event with this break's
 * fingerprint exists. Under the audit append lock, so two replicas finding the same break record it once.
 */
export async function recordVerifyFailure(
  db: PrismaClient,
  key: Buffer,
  broken: BrokenChain,
  opts: { source: 'periodic' | 'request'; checkpoints: number },
  now: Date = new Date(),
): Promise<VerifyAlert> {
  const fingerprint = await fingerprintOf(db, key, broken);
  return db.$transaction(async (tx) => {
    const head = await lockHead(tx);
    const seen = await tx.auditEvent.findFirst({
      where: { action: 'audit.verify_failed', data: { path: ['fingerprint'], equals: fingerprint } },
      select: { seq: true },
      orderBy: { seq: 'asc' },
    });
    if (seen) return { recorded: false, seq: seen.seq, fingerprint, rules: 0, written: 0 };
    const record = {
      action: 'audit.verify_failed',
      actorType: 'system',
      actorName: AUDIT_VERIFIER.name,
      subjectType: 'audit_event',
      subjectId: broken.brokenAt.toString(),
      // As stored: canonical JSON (appendAudit normalises data the same way).
      data: JSON.parse(
        canonicalJson({
          kind: broken.kind,
          brokenAt: broken.brokenAt.toString(),
          reason: broken.reason,
          checkpointSeq: broken.checkpointSeq?.toString() ?? null,
          verifiedEvents: broken.count,
          checkpoints: opts.checkpoints,
          source: opts.source,
          fingerprint,
        }),
      ) as Record<string, unknown>,
    };
    // The append lock is held: the record takes the next seq after this head.
    const seal = sealOf(key, {
      ...record,
      seq: (head?.seq ?? 0n) + 1n,
      prevHash: head?.hash ?? GENESIS_HASH,
    });
    const event = await appendAudit(
      tx,
      {
        actor: AUDIT_VERIFIER,
        action: record.action,
        subjectType: record.subjectType,
        subjectId: record.subjectId,
        data: { ...record.data, seal },
      },
      now,
    );
    const { rules, written } = await enqueueVerifyFailure(tx, event, fingerprint);
    return { recorded: true, seq: event.seq, fingerprint, rules, written };
  });
}
