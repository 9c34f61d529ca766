/**
 * Signed checkpoints of the audit chain and their off-box copies. A checkpoint is the chain's head (seq and
 * hash) signed with an Ed25519 key held in a file, never in the database: whoever can rewrite the database
 * (its owner, a superuser, anyone with the PGlite directory) can recompute every hash, but cannot sign a new
 * checkpoint — so verify (against the checkpoints) reports a chain that was cut short or rewritten. Sinks copy
 * every checkpoint off the box, so deleting checkpoint rows does not hide the tampering either.
 */
import { lookup } from 'node:dns/promises';
import { appendFile, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isNonPublicAddress } from './notifications-net';
import type { KeyObject } from 'node:crypto';
import {
  AuditCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
  type AuditCheckpoint as Checkpoint,
} from '@pyreach/protocol/audit';
import type { AuditCheckpoint as CheckpointRow, Db, PrismaClient } from '@pyreach/db';
import { lockHead, verifyAuditChain, type CheckpointClaim, type VerifyResult } from './audit';

export interface CheckpointKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function toCheckpoint(r: CheckpointRow): Checkpoint {
  return {
    v: 1,
    seq: r.seq.toString(),
    headHash: r.headHash,
    at: r.at.toISOString(),
    keyId: r.keyId,
    signature: r.signature,
  };
}

export async function latestCheckpoint(db: Db): Promise<Checkpoint | null> {
  const r = await db.auditCheckpoint.findFirst({ orderBy: { seq: 'desc' } });
  return r ? toCheckpoint(r) : null;
}

/**
 * Signs the current head and stores it, under the append lock (so the head cannot move meanwhile). Returns
 * `{ checkpoint, created }`: `created` is false when the newest checkpoint already covers the head (nothing
 * new to sign), and `checkpoint` is null only while the chain is empty.
 */
export async function takeCheckpoint(
  prisma: PrismaClient,
  key: CheckpointKey,
  now: Date = new Date(),
): Promise<{ checkpoint: Checkpoint | null; created: boolean }> {
  return prisma.$transaction(async (tx) => {
    const head = await lockHead(tx);
    if (!head) return { checkpoint: null, created: false };
    const existing = await tx.auditCheckpoint.findUnique({ where: { seq: head.seq } });
    if (existing) return { checkpoint: toCheckpoint(existing), created: false };
    // Never sign a chain shorter than one already signed: that head is the result of a truncation.
    const newest = await tx.auditCheckpoint.findFirst({ orderBy: { seq: 'desc' } });
    if (newest && newest.seq > head.seq) return { checkpoint: toCheckpoint(newest), created: false };
    const c = signCheckpoint({ seq: head.seq, headHash: head.hash, at: now }, key.privateKey, key.publicKey);
    await tx.auditCheckpoint.create({
      data: { seq: head.seq, headHash: c.headHash, at: now, keyId: c.keyId, signature: c.signature },
    });
    return { checkpoint: c, created: true };
  });
}

/** What verify reports about checkpoints, besides the chain walk's result. */
export interface CheckpointVerify {
  chain: VerifyResult;
  checkpoints: number;
  latest: Checkpoint | null;
}

/**
 * Verifies the chain and every checkpoint: the database's and, when given, the copies read back from the
 * file sink (a checkpoint deleted from the database still counts there). A checkpoint that is not validly
 * signed by a trusted key is reported as such (a forged checkpoint proves nothing); a validly signed one that
 * disagrees with the chain names the cut or rewritten events.
 */
export async function verifyWithCheckpoints(
  db: Db,
  trusted: readonly KeyObject[],
  opts: { extra?: readonly Checkpoint[]; batchSize?: number } = {},
): Promise<CheckpointVerify> {
  const rows = (await db.auditCheckpoint.findMany({ orderBy: { seq: 'asc' } })).map(toCheckpoint);
  const bySeq = new Map<string, Checkpoint>();
  for (const c of [...rows, ...(opts.extra ?? [])]) {
    const seen = bySeq.get(c.seq);
    if (seen && (seen.headHash !== c.headHash || seen.signature !== c.signature)) {
      // Two different claims about one seq: both are checked below; keep the off-box one if it verifies.
      if (verifyCheckpoint(c, trusted).ok) bySeq.set(c.seq, c);
      continue;
    }
    bySeq.set(c.seq, c);
  }
  const all = [...bySeq.values()].sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
  const latest = all.at(-1) ?? null;
  for (const c of all) {
    const sig = verifyCheckpoint(c, trusted);
    if (!sig.ok) {
      return {
        chain: {
          ok: false,
          kind: 'signature',
          brokenAt: BigInt(c.seq),
          reason: sig.reason,
          count: 0,
          checkpointSeq: BigInt(c.seq),
        },
        checkpoints: all.length,
        latest,
      };
    }
  }
  const claims: CheckpointClaim[] = all.map((c) => ({
    seq: BigInt(c.seq),
    headHash: c.headHash,
    label: `checkpoint signed at ${c.at} (seq ${c.seq})`,
  }));
  const chain = await verifyAuditChain(db, { checkpoints: claims, batchSize: opts.batchSize });
  return { chain, checkpoints: all.length, latest };
}

// ---- sinks ------------------------------------------------------------------------------------------------

/** Somewhere off the box that keeps a copy of every checkpoint. */
export interface CheckpointSink {
  name: string;
  write(c: Checkpoint): Promise<void>;
}

/** Appends one JSON line per checkpoint (O_APPEND, created 0600). */
export function fileSink(file: string): CheckpointSink {
  return {
    name: `file:${file}`,
    write: (c) => appendFile(file, `${JSON.stringify(c)}\n`, { mode: 0o600, flag: 'a' }),
  };
}

/** Reads a file sink back (for verify); lines that are not checkpoints are skipped. Missing file: none. */
export async function readFileSink(file: string): Promise<Checkpoint[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: Checkpoint[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const c = AuditCheckpoint.safeParse(JSON.parse(line));
      if (c.success) out.push(c.data);
    } catch {
      /* a torn last line (crash mid-append) is not a checkpoint */
    }
  }
  return out;
}

/**
 * True for loopback, private, link-local, CGNAT, multicast and other non-public addresses (and anything not an IP):
 * the one list of them, kept with the notification guard (notifications-net.ts), which also unmaps every
 * IPv4-mapped and translated spelling.
 */
export function isPrivateAddress(address: string): boolean {
  return isNonPublicAddress(address);
}

export class WebhookRefused extends Error {
  override name = 'WebhookRefused';
}

/**
 * POSTs each checkpoint as JSON. Loopback and private destinations are refused unless their host is in
 * `allow`; the check runs on the addresses the connection actually uses (a custom DNS lookup), so a name that
 * resolves to 127.0.0.1 on the second lookup is refused too. Non-2xx answers and timeouts are failures.
 */
export function webhookSink(url: string, allow: readonly string[], timeoutMs = 10_000): CheckpointSink {
  const target = new URL(url);
  if (target.protocol !== 'http:' && target.protocol !== 'https:')
    throw new WebhookRefused(`webhook sink ${url}: only http and https`);
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const allowed = allow.includes(host);
  if (!allowed && isIP(host) && isPrivateAddress(host))
    throw new WebhookRefused(
      `webhook sink ${target.origin} is a loopback/private address; add ${host} to PYREACH_AUDIT_SINK_WEBHOOK_ALLOW to allow it`,
    );
  const guardedLookup: LookupFunction = (hostname, options, callback) => {
    lookup(hostname, { all: true, family: options.family ?? 0 }).then(
      (addrs) => {
        const bad = addrs.find((a) => isPrivateAddress(a.address));
        if (!allowed && bad) {
          callback(
            new WebhookRefused(
              `webhook sink ${hostname} resolves to ${bad.address}, a loopback/private address`,
            ),
            '',
            0,
          );
          return;
        }
        const first = addrs[0];
        if (!first) {
          callback(new WebhookRefused(`webhook sink ${hostname} does not resolve`), '', 0);
          return;
        }
        if (options.all) callback(null, addrs);
        else callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return {
    name: `webhook:${target.origin}${target.pathname}`,
    write: (c) =>
      new Promise<void>((resolve, reject) => {
        const body = JSON.stringify(c);
        const req = send(
          target,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
            lookup: guardedLookup,
            timeout: timeoutMs,
          },
          (res) => {
            res.resume();
            res.on('end', () => {
              const status = res.statusCode ?? 0;
              if (status >= 200 && status < 300) resolve();
              else reject(new Error(`webhook sink answered ${status}`));
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error(`webhook sink did not answer in ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end(body);
      }),
  };
}
