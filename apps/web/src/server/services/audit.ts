import { canonicalJson } from '@pyreach/protocol/canonical';
import { GENESIS_HASH, auditHash, type AuditHashFields } from '@pyreach/protocol/audit';
import type { JsonObject } from '@pyreach/protocol/common';
import type { AuditEvent, Db, PrismaClient, Tx } from '@pyreach/db';
import { actorColumns, actorData, type Actor } from './actor';
import { AppError } from './errors';
import { enqueueNotifications } from './notifications-outbox';

export { GENESIS_HASH, auditHash, type AuditHashFields };

/**
 * Transaction-scoped advisory lock serialising appends, so two writers never read the same head and fork the
 * chain. Held until the caller's transaction ends: append as the last step of a transaction.
 */
const AUDIT_LOCK_KEY = '7021956010637099380'; // arbitrary constant ("audit" lock)

export interface AuditInput {
  actor: Actor;
  /** Dotted verb, e.g. `request.create`, `review.approve`, `agent.revoke`. */
  action: string;
  subjectType?: string;
  subjectId?: string;
  /** JSON object (normalised through canonical JSON before storing, so it hashes the same when read back). */
  data?: JsonObject | Record<string, unknown>;
}

/**
 * Appends one event to the chain inside `tx` — the same transaction as the state change it records, so both
 * commit or neither does. Sequence numbers are contiguous from 1; `at` never goes backwards along the chain
 * (max of now and the previous event's time), which lets time filters become seq ranges.
 */
export async function appendAudit(tx: Tx, input: AuditInput, now: Date = new Date()): Promise<AuditEvent> {
  const head = await lockHead(tx);
  const event = await tx.auditEvent.create({ data: chainLink(head, input, now) });
  // Notifications this change causes enter the outbox in the same transaction (notifications-outbox.ts).
  await enqueueNotifications(tx, [event]);
  return event;
}

/**
 * Appends several events in order inside `tx`, as `appendAudit` would one by one, but with one lock, one read of
 * the head and one insert: a wave of a thousand job sends is a thousand events, not a thousand round trips.
 * Returns how many were appended.
 */
export async function appendAuditMany(tx: Tx, inputs: AuditInput[], now: Date = new Date()): Promise<number> {
  if (inputs.length === 0) return 0;
  let head = await lockHead(tx);
  const rows = inputs.map((input) => {
    const row = chainLink(head, input, now);
    head = { seq: row.seq, hash: row.hash, at: row.at };
    return row;
  });
  const count = (await tx.auditEvent.createMany({ data: rows })).count;
  await enqueueNotifications(tx, rows);
  return count;
}

type ChainHead = { seq: bigint; hash: string; at: Date } | null;

/**
 * Takes the append lock (held until `tx` ends) and reads the chain's last event: no event is appended until
 * `tx` ends, so a checkpoint taken inside it signs a head that is still the head.
 */
export async function lockHead(tx: Tx): Promise<ChainHead> {
  await tx.$queryRawUnsafe('SELECT pg_advisory_xact_lock($1::bigint) IS NULL AS locked', AUDIT_LOCK_KEY);
  return tx.auditEvent.findFirst({ orderBy: { seq: 'desc' }, select: { seq: true, hash: true, at: true } });
}

/** The row that follows `head` for `input`: next seq, non-decreasing `at`, linked and hashed. */
function chainLink(head: ChainHead, input: AuditInput, now: Date) {
  const seq = (head?.seq ?? 0n) + 1n;
  const at = new Date(Math.max(now.getTime(), head?.at.getTime() ?? 0));
  const prevHash = head?.hash ?? GENESIS_HASH;
  const actor = actorColumns(input.actor);
  const data = JSON.parse(canonicalJson({ ...input.data, ...actorData(input.actor) })) as JsonObject;
  const fields: AuditHashFields = {
    seq: seq.toString(),
    at: at.toISOString(),
    actorType: actor.actorType,
    actorId: actor.actorId,
    actorName: actor.actorName,
    action: input.action,
    subjectType: input.subjectType ?? null,
    subjectId: input.subjectId ?? null,
    data,
  };
  return {
    seq,
    at,
    actorType: fields.actorType,
    actorId: fields.actorId,
    actorName: fields.actorName,
    action: fields.action,
    subjectType: fields.subjectType,
    subjectId: fields.subjectId,
    data,
    prevHash,
    hash: auditHash(prevHash, fields),
  };
}

/** Appends an event in a transaction of its own (for events with no other state change, e.g. sign-in). */
export async function recordAudit(prisma: PrismaClient, input: AuditInput): Promise<AuditEvent> {
  return prisma.$transaction((tx) => appendAudit(tx, input));
}

export type VerifyResult =
  | { ok: true; count: number; lastSeq: bigint }
  | {
      ok: false;
      /**
       * What is wrong: an event `missing`, one that does not link (`unlinked`), one `altered`, events
       * `rewritten` before a checkpoint, the chain `cut` below one, or a checkpoint whose `signature` fails.
       */
      kind: 'missing' | 'unlinked' | 'altered' | 'rewritten' | 'cut' | 'signature';
      brokenAt: bigint;
      reason: string;
      count: number;
      /** Set when the chain holds together but disagrees with this (validly signed) checkpoint. */
      checkpointSeq?: bigint;
    };

/** A checkpoint as the chain walk compares it: its seq and the head hash it signed. */
export interface CheckpointClaim {
  seq: bigint;
  headHash: string;
  /** How to name it in a report, e.g. `checkpoint of 2026-…Z (seq 41)`. */
  label: string;
}

/**
 * Recomputes the whole chain in seq order, in batches (keyset on seq, constant memory), and names the first
 * event that does not hold: a gap in seq, a prevHash that is not the previous hash, or a hash that does not
 * match the event's fields (an edit made behind the triggers' back).
 */
export async function verifyAuditChain(
  db: Db,
  opts: { batchSize?: number; checkpoints?: readonly CheckpointClaim[] } = {},
): Promise<VerifyResult> {
  const batchSize = opts.batchSize ?? 5000;
  const claims = new Map((opts.checkpoints ?? []).map((c) => [c.seq, c]));
  let prevHash = GENESIS_HASH;
  let expected = 1n;
  let count = 0;
  for (;;) {
    const rows = await db.auditEvent.findMany({
      where: { seq: { gte: expected } },
      orderBy: { seq: 'asc' },
      take: batchSize,
    });
    if (rows.length === 0) break;
    for (const e of rows) {
      if (e.seq !== expected) {
        return {
          ok: false,
          kind: 'missing',
          brokenAt: expected,
          reason: `event ${expected} is missing (next is ${e.seq})`,
          count,
        };
      }
      if (e.prevHash !== prevHash) {
        return {
          ok: false,
          kind: 'unlinked',
          brokenAt: e.seq,
          reason: `event ${e.seq} does not link to the hash of event ${e.seq - 1n}`,
          count,
        };
      }
      const hash = auditHash(prevHash, hashFieldsOf(e));
      if (hash !== e.hash) {
        return {
          ok: false,
          kind: 'altered',
          brokenAt: e.seq,
          reason: `event ${e.seq} was altered: its content no longer matches its hash`,
          count,
        };
      }
      const claim = claims.get(e.seq);
      if (claim && claim.headHash !== e.hash) {
        return {
          ok: false,
          kind: 'rewritten',
          brokenAt: e.seq,
          reason: `event ${e.seq} differs from the ${claim.label}: events up to ${e.seq} were rewritten (and their hashes recomputed)`,
          count,
          checkpointSeq: claim.seq,
        };
      }
      prevHash = e.hash;
      expected += 1n;
      count += 1;
    }
    if (rows.length < batchSize) break;
  }
  const lastSeq = expected - 1n;
  const beyond = [...claims.values()].filter((c) => c.seq > lastSeq).sort((a, b) => (a.seq < b.seq ? 1 : -1));
  const longest = beyond[0];
  if (longest) {
    return {
      ok: false,
      kind: 'cut',
      brokenAt: lastSeq + 1n,
      reason: `the chain ends at event ${lastSeq} but the ${longest.label} covers ${longest.seq}: events ${lastSeq + 1n}..${longest.seq} were cut off`,
      count,
      checkpointSeq: longest.seq,
    };
  }
  return { ok: true, count, lastSeq };
}

function hashFieldsOf(e: AuditEvent): AuditHashFields {
  return {
    seq: e.seq.toString(),
    at: e.at.toISOString(),
    actorType: e.actorType,
    actorId: e.actorId,
    actorName: e.actorName,
    action: e.action,
    subjectType: e.subjectType,
    subjectId: e.subjectId,
    data: e.data,
  };
}

export interface AuditFilter {
  actorId?: string;
  /** A user's or agent's name, or a user's e-mail, case-insensitive (the explorer's actor box). */
  actor?: string;
  action?: string;
  subjectType?: string;
  subjectId?: string;
  /** Inclusive lower bound on `at`. */
  from?: Date;
  /** Exclusive upper bound on `at`. */
  to?: Date;
  /** Words to find (prefix match, all words) in action, actor name, subject and string/number values of data. */
  text?: string;
}

export interface AuditQuery extends AuditFilter {
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** Page size, 1..500 (default 50). */
  limit?: number;
}

export interface AuditPage {
  items: AuditEvent[];
  /** Pass back as `cursor` for the next (older) page; null at the end. */
  nextCursor: string | null;
}

/**
 * One page of events, newest first, keyset-paginated on seq (`seq < cursor`), so every page costs the same
 * however deep. Each filter has an index ending in seq; time bounds become a seq range by probing the
 * (at, seq) index; text uses the GIN index over `audit_event_search(...)`.
 */
export async function queryAudit(db: Db, query: AuditQuery = {}): Promise<AuditPage> {
  const limit = Math.min(Math.max(Math.trunc(query.limit ?? 50), 1), 500);
  let before: bigint | undefined;
  if (query.cursor !== undefined) {
    if (!/^\d{1,19}$/.test(query.cursor))
      throw new AppError('VALIDATION', 'cursor must be a decimal sequence number');
    before = BigInt(query.cursor);
  }
  const items = await fetchPage(db, query, { order: 'desc', before, limit });
  const last = items.at(-1);
  return { items, nextCursor: items.length === limit && last ? last.seq.toString() : null };
}

interface PageOpts {
  order: 'asc' | 'desc';
  /** desc: seq < before. */
  before?: bigint;
  /** asc: seq > after. */
  after?: bigint;
  /** seq <= upTo. */
  upTo?: bigint;
  limit: number;
}

/** Turns user words into a prefix tsquery ('word':* & ...), keeping only characters that are data, not syntax. */
export function toPrefixQuery(text: string): string | null {
  const words = text
    .split(/\s+/)
    .map((w) => w.replace(/[^\p{L}\p{N}_.@/-]/gu, ''))
    .filter((w) => w.length > 0)
    .slice(0, 8);
  if (words.length === 0) return null;
  return words.map((w) => `'${w}':*`).join(' & ');
}

async function seqBounds(db: Db, f: AuditFilter): Promise<{ lo?: bigint; hi?: bigint; empty: boolean }> {
  let lo: bigint | undefined;
  let hi: bigint | undefined;
  if (f.from) {
    const r = await db.auditEvent.findFirst({
      where: { at: { gte: f.from } },
      orderBy: [{ at: 'asc' }, { seq: 'asc' }],
      select: { seq: true },
    });
    if (!r) return { empty: true };
    lo = r.seq;
  }
  if (f.to) {
    const r = await db.auditEvent.findFirst({
      where: { at: { lt: f.to } },
      orderBy: [{ at: 'desc' }, { seq: 'desc' }],
      select: { seq: true },
    });
    if (!r) return { empty: true };
    hi = r.seq;
  }
  return { lo, hi, empty: lo !== undefined && hi !== undefined && lo > hi };
}

async function fetchPage(db: Db, f: AuditFilter, p: PageOpts): Promise<AuditEvent[]> {
  const bounds = await seqBounds(db, f);
  if (bounds.empty) return [];
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replaceAll('?', `$${params.length}`));
  };
  if (f.actorId !== undefined) add('"actorId" = ?', f.actorId);
  if (f.actor !== undefined) {
    // The name recorded with the event (as it was then), or whoever has that name or e-mail now.
    add(
      `(lower("actorName") = lower(?) OR "actorId" IN (
         SELECT "id" FROM "user" WHERE lower("email") = lower(?) OR lower("name") = lower(?)
         UNION ALL SELECT "id" FROM "agent" WHERE lower("name") = lower(?)))`,
      f.actor,
    );
  }
  if (f.action !== undefined) add('"action" = ?', f.action);
  if (f.subjectType !== undefined) add('"subjectType" = ?', f.subjectType);
  if (f.subjectId !== undefined) add('"subjectId" = ?', f.subjectId);
  if (f.from) add('"at" >= ?::timestamptz', f.from.toISOString());
  if (f.to) add('"at" < ?::timestamptz', f.to.toISOString());
  if (bounds.lo !== undefined) add('"seq" >= ?::bigint', bounds.lo.toString());
  if (bounds.hi !== undefined) add('"seq" <= ?::bigint', bounds.hi.toString());
  if (p.before !== undefined) add('"seq" < ?::bigint', p.before.toString());
  if (p.after !== undefined) add('"seq" > ?::bigint', p.after.toString());
  if (p.upTo !== undefined) add('"seq" <= ?::bigint', p.upTo.toString());
  if (f.text !== undefined) {
    const q = toPrefixQuery(f.text);
    if (q === null) throw new AppError('VALIDATION', 'text search needs at least one word');
    add(
      `"audit_event_search"("action", "actorName", "subjectType", "subjectId", "data") @@ to_tsquery('simple', ?)`,
      q,
    );
  }
  params.push(p.limit);
  const sql = `SELECT "seq", "at", "actorType", "actorId", "actorName", "action", "subjectType", "subjectId", "data", "prevHash", "hash"
       FROM "audit_event"${where.length ? ` WHERE ${where.join(' AND ')}` : ''}
      ORDER BY "seq" ${p.order === 'asc' ? 'ASC' : 'DESC'} LIMIT $${params.length}`;
  const rows = await db.$queryRawUnsafe<AuditEvent[]>(sql, ...params);
  return rows.map((r) => ({ ...r, seq: BigInt(r.seq), at: new Date(r.at) }));
}

/** How each subject type is named for a person, as SQL over the page's ids (a JSON array in $1). */
const SUBJECT_NAMES: Record<string, string> = {
  user: `SELECT 'user' AS t, "id", "name" || ' <' || "email" || '>' AS name FROM "user"`,
  agent: `SELECT 'agent' AS t, "id", "name" AS name FROM "agent"`,
  policy: `SELECT 'policy' AS t, "id", "name" AS name FROM "policy"`,
  request: `SELECT 'request' AS t, "id", coalesce("scriptId", 'custom code') || ': ' || left("reason", 80) AS name
              FROM "injection_request"`,
  execution: `SELECT 'execution' AS t, e."id", 'pid ' || e."pid" || ' on ' || a."name" AS name
                FROM "execution" e JOIN "agent" a ON a."id" = e."agentId"`,
  join_token: `SELECT 'join_token' AS t, "id", coalesce("note", 'join token') AS name FROM "join_token"`,
};

/**
 * The events with their subject's current name next to the id (`subjectName`, null when the subject is gone
 * or of a type without names), resolved for the whole page in one query.
 */
export async function withSubjectNames<E extends Pick<AuditEvent, 'subjectType' | 'subjectId'>>(
  db: Db,
  events: E[],
): Promise<(E & { subjectName: string | null })[]> {
  const byType = new Map<string, Set<string>>();
  for (const e of events) {
    if (e.subjectType && e.subjectId && SUBJECT_NAMES[e.subjectType])
      (byType.get(e.subjectType) ?? byType.set(e.subjectType, new Set()).get(e.subjectType)!).add(
        e.subjectId,
      );
  }
  const names = new Map<string, string>();
  if (byType.size > 0) {
    const parts: string[] = [];
    const params: string[] = [];
    for (const [type, ids] of byType) {
      params.push(JSON.stringify([...ids]));
      const idCol = type === 'execution' ? 'e."id"' : '"id"';
      parts.push(
        `${SUBJECT_NAMES[type]} WHERE ${idCol} IN (SELECT jsonb_array_elements_text($${params.length}::jsonb))`,
      );
    }
    const rows = await db.$queryRawUnsafe<{ t: string; id: string; name: string }[]>(
      parts.join(' UNION ALL '),
      ...params,
    );
    for (const r of rows) names.set(`${r.t}:${r.id}`, r.name);
  }
  return events.map((e) => ({
    ...e,
    subjectName: (e.subjectType && e.subjectId && names.get(`${e.subjectType}:${e.subjectId}`)) || null,
  }));
}

const CSV_COLUMNS = [
  'seq',
  'at',
  'actorType',
  'actorId',
  'actorName',
  'action',
  'subjectType',
  'subjectId',
  'data',
  'prevHash',
  'hash',
] as const;

/** RFC 4180 field: quoted when it holds a comma, quote, CR or LF (or edge spaces); quotes doubled. */
/**
 * A spreadsheet runs a cell starting with = + - @ (and, in some, tab or CR) as a formula: `=HYPERLINK(…)` in a
 * request's reason would become a link in the auditor's spreadsheet. Such cells get a leading apostrophe, which
 * spreadsheets show as text and never evaluate (OWASP's CSV-injection advice); the JSON Lines export is exact.
 */
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvField(value: string | null): string {
  if (value === null) return '';
  const text = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function exportRecord(e: AuditEvent): Record<(typeof CSV_COLUMNS)[number], string | null> {
  return {
    seq: e.seq.toString(),
    at: e.at.toISOString(),
    actorType: e.actorType,
    actorId: e.actorId,
    actorName: e.actorName,
    action: e.action,
    subjectType: e.subjectType,
    subjectId: e.subjectId,
    data: canonicalJson(e.data),
    prevHash: e.prevHash,
    hash: e.hash,
  };
}

/**
 * Streams the filtered events oldest first, `batchSize` rows per query, as JSON Lines (one object per line,
 * seq as a string, data as JSON) or CSV (header + one row per event, data as canonical JSON). Each yielded
 * string is a chunk ending in a newline, ready to write to a response.
 */
export async function* exportAudit(
  db: Db,
  filter: AuditFilter,
  format: 'jsonl' | 'csv',
  opts: { batchSize?: number; upTo?: bigint; trailer?: string } = {},
): AsyncIterable<string> {
  const batchSize = opts.batchSize ?? 2000;
  if (format === 'csv') yield `${CSV_COLUMNS.join(',')}\r\n`;
  let after: bigint | undefined;
  for (;;) {
    const rows = await fetchPage(db, filter, { order: 'asc', after, upTo: opts.upTo, limit: batchSize });
    if (rows.length === 0) break;
    let chunk = '';
    for (const e of rows) {
      const rec = exportRecord(e);
      if (format === 'csv') {
        chunk += `${CSV_COLUMNS.map((c) => csvField(rec[c])).join(',')}\r\n`;
      } else {
        chunk += `${JSON.stringify({ ...rec, data: e.data })}\n`;
      }
    }
    yield chunk;
    if (rows.length < batchSize) break;
    after = rows.at(-1)!.seq;
  }
  if (opts.trailer !== undefined) yield opts.trailer;
}
