/**
 * The audit trail's integrity, as anyone holding an export can check it: the hash chain link, signed
 * checkpoints (Ed25519 over the sequence number and head hash, by a key kept outside the database) and an
 * offline verifier of a JSON Lines export. The control plane (apps/web services/audit*.ts) uses the same
 * functions, so what it signs and what a verifier checks are one definition.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from './canonical';
import { keyIdOf } from './job';

/** prevHash of the first event. */
export const GENESIS_HASH = '0'.repeat(64);

/** The fields the hash covers, exactly as hashed. */
export interface AuditHashFields {
  seq: string;
  at: string;
  actorType: string;
  actorId: string | null;
  actorName: string | null;
  action: string;
  subjectType: string | null;
  subjectId: string | null;
  data: unknown;
}

/**
 * The chain link: `hash = SHA-256 hex( prevHash || canonicalJson(fields) )` where the string concatenation is
 * of the 64-char lowercase hex prevHash and the canonical JSON (keys sorted, no spaces) of
 * `{action, actorId, actorName, actorType, at, data, seq, subjectId, subjectType}`; `seq` is the decimal string,
 * `at` is ISO 8601 UTC with milliseconds (`2026-01-01T00:00:00.000Z`), absent values are `null`.
 */
export function auditHash(prevHash: string, fields: AuditHashFields): string {
  return sha256Hex(prevHash + canonicalJson(fields));
}

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** A signed checkpoint: "the chain had `seq` events and the last one's hash was `headHash`", at `at`. */
export const AuditCheckpoint = z.object({
  v: z.literal(1),
  seq: z.string().regex(/^[1-9]\d{0,18}$/),
  headHash: Hex64,
  at: z.iso.datetime(),
  /** SHA-256 hex of the signing key's SPKI DER. */
  keyId: Hex64,
  /** Base64 Ed25519 signature over {@link checkpointMessage}. */
  signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/),
});
export type AuditCheckpoint = z.infer<typeof AuditCheckpoint>;

/** The exact signed bytes: a domain tag, then canonical JSON of {at, headHash, keyId, seq, v}. */
export function checkpointMessage(c: Omit<AuditCheckpoint, 'signature'>): Buffer {
  const { v, seq, headHash, at, keyId } = c;
  return Buffer.from(`pyreach-audit-checkpoint\n${canonicalJson({ v, seq, headHash, at, keyId })}`, 'utf8');
}

export function signCheckpoint(
  head: { seq: bigint; headHash: string; at: Date },
  privateKey: KeyObject,
  publicKey: KeyObject,
): AuditCheckpoint {
  const body = {
    v: 1 as const,
    seq: head.seq.toString(),
    headHash: head.headHash,
    at: head.at.toISOString(),
    keyId: keyIdOf(publicKey),
  };
  return { ...body, signature: sign(null, checkpointMessage(body), privateKey).toString('base64') };
}

/** Checks a checkpoint's signature against the trusted public keys (never a key the checkpoint names itself). */
export function verifyCheckpoint(
  c: AuditCheckpoint,
  trusted: readonly KeyObject[],
): { ok: true } | { ok: false; reason: string } {
  const key = trusted.find((k) => keyIdOf(k) === c.keyId);
  if (!key)
    return { ok: false, reason: `checkpoint at seq ${c.seq} is signed by an untrusted key ${c.keyId}` };
  const good = verify(null, checkpointMessage(c), key, Buffer.from(c.signature, 'base64'));
  return good ? { ok: true } : { ok: false, reason: `checkpoint at seq ${c.seq} has an invalid signature` };
}

/** One event as exported (JSON Lines). */
export const ExportedAuditEvent = z.object({
  seq: z.string().regex(/^\d+$/),
  at: z.string(),
  actorType: z.string(),
  actorId: z.string().nullable(),
  actorName: z.string().nullable(),
  action: z.string(),
  subjectType: z.string().nullable(),
  subjectId: z.string().nullable(),
  data: z.unknown(),
  prevHash: Hex64,
  hash: Hex64,
});

export type ExportVerification =
  | { valid: true; count: number; checkpoint: AuditCheckpoint; complete: boolean }
  | { valid: false; reason: string; seq?: string };

/**
 * Verifies a JSON Lines export offline: every event's hash matches its content, consecutive events link, the
 * export's checkpoint (its last line, `{"checkpoint": …}`) is signed by a trusted key, and the event at the
 * checkpoint's seq has the checkpoint's head hash. `complete` is true when the export starts at seq 1 and has
 * no gaps (an unfiltered export): then nothing before the checkpoint can have been cut, rewritten or added.
 */
export function verifyAuditExport(jsonl: string, trusted: readonly KeyObject[]): ExportVerification {
  const lines = jsonl.split('\n').filter((l) => l.trim() !== '');
  let checkpoint: AuditCheckpoint | null = null;
  let prev: { seq: bigint; hash: string } | null = null;
  let contiguous = true;
  let count = 0;
  const hashes = new Map<bigint, string>();
  for (const [i, line] of lines.entries()) {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return { valid: false, reason: `line ${i + 1} is not JSON` };
    }
    if (value && typeof value === 'object' && 'checkpoint' in value) {
      const c = AuditCheckpoint.safeParse(value.checkpoint);
      if (!c.success) return { valid: false, reason: `line ${i + 1}: malformed checkpoint` };
      checkpoint = c.data;
      continue;
    }
    const e = ExportedAuditEvent.safeParse(value);
    if (!e.success) return { valid: false, reason: `line ${i + 1}: not an audit event` };
    const ev = e.data;
    const seq = BigInt(ev.seq);
    const fields: AuditHashFields = {
      seq: ev.seq,
      at: ev.at,
      actorType: ev.actorType,
      actorId: ev.actorId,
      actorName: ev.actorName,
      action: ev.action,
      subjectType: ev.subjectType,
      subjectId: ev.subjectId,
      data: ev.data,
    };
    if (auditHash(ev.prevHash, fields) !== ev.hash)
      return { valid: false, reason: `event ${ev.seq} does not match its hash`, seq: ev.seq };
    if (prev === null) {
      if (seq !== 1n || ev.prevHash !== GENESIS_HASH) contiguous = false;
    } else if (seq === prev.seq + 1n) {
      if (ev.prevHash !== prev.hash)
        return { valid: false, reason: `event ${ev.seq} does not link to event ${prev.seq}`, seq: ev.seq };
    } else if (seq <= prev.seq) {
      return { valid: false, reason: `event ${ev.seq} is out of order`, seq: ev.seq };
    } else contiguous = false;
    prev = { seq, hash: ev.hash };
    hashes.set(seq, ev.hash);
    count += 1;
  }
  if (!checkpoint) return { valid: false, reason: 'the export carries no checkpoint' };
  const sig = verifyCheckpoint(checkpoint, trusted);
  if (!sig.ok) return { valid: false, reason: sig.reason, seq: checkpoint.seq };
  // The event at the checkpoint's seq, if exported, must carry the signed head hash.
  const cpSeq = BigInt(checkpoint.seq);
  const head = hashes.get(cpSeq);
  if (head !== undefined && head !== checkpoint.headHash)
    return {
      valid: false,
      reason: `event ${checkpoint.seq} differs from the signed checkpoint: events up to it were rewritten`,
      seq: checkpoint.seq,
    };
  if (contiguous && (prev === null || prev.seq < cpSeq))
    return {
      valid: false,
      reason: `the export ends at seq ${prev?.seq ?? 0} but the checkpoint covers ${checkpoint.seq}: events were cut off`,
      seq: checkpoint.seq,
    };
  return { valid: true, count, checkpoint, complete: contiguous && head !== undefined };
}
