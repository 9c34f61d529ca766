/**
 * Audit benchmark (PostgreSQL): 1,000,000 hash-chained events, then filtered page queries (median of repeated
 * runs) and chain verification speed. Writes the `## Control plane: audit` section of docs/benchmarks.md.
 *
 *   node --import tsx bench/audit.ts [--events 1000000] [--runs 15] [--no-write]
 */
import { writeSection } from './support';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { createTestDatabase } from '@pyreach/db/testing';
import {
  GENESIS_HASH,
  auditHash,
  queryAudit,
  verifyAuditChain,
  type AuditQuery,
} from '../apps/web/src/server/services/audit';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const EVENTS = arg('events', 1_000_000);
const RUNS = arg('runs', 15);
const BATCH = 10_000;
const ACTIONS = [
  'request.create',
  'review.approve',
  'review.reject',
  'request.dispatch',
  'execution.send',
  'execution.result',
  'agent.connect',
  'agent.disconnect',
  'auth.sign_in',
  'policy.update',
];
const USERS = 200;
const REQUESTS = 50_000;

const db = await createTestDatabase('postgres', { poolSize: 2 });
try {
  const start = new Date('2026-01-01T00:00:00.000Z').getTime();
  let prev = GENESIS_HASH;
  const t0 = performance.now();
  for (let base = 0; base < EVENTS; base += BATCH) {
    const cols: string[][] = Array.from({ length: 11 }, () => []);
    for (let i = base; i < Math.min(base + BATCH, EVENTS); i++) {
      const seq = String(i + 1);
      const at = new Date(start + i * 250).toISOString(); // 4 events/s over ~2.9 days
      const user = i % USERS;
      const action = ACTIONS[(i * 7) % ACTIONS.length]!;
      const req = `req_${(i * 13) % REQUESTS}`;
      const data = { comment: `event ${i} note ${i % 997 === 0 ? 'needle' : 'hay'}`, n: i % 100 };
      const fields = {
        seq,
        at,
        actorType: 'user',
        actorId: `u_${user}`,
        actorName: `User ${user}`,
        action,
        subjectType: 'request',
        subjectId: req,
        data,
      };
      const hash = auditHash(prev, fields);
      const row = [
        seq,
        at,
        'user',
        `u_${user}`,
        `User ${user}`,
        action,
        'request',
        req,
        canonicalJson(data),
        prev,
        hash,
      ];
      row.forEach((v, c) => cols[c]!.push(v));
      prev = hash;
    }
    await db.prisma.$executeRawUnsafe(
      `INSERT INTO audit_event (seq, at, "actorType", "actorId", "actorName", action, "subjectType", "subjectId", data, "prevHash", hash)
       SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::text[])`,
      ...cols,
    );
  }
  const loadSeconds = (performance.now() - t0) / 1000;
  await db.prisma.$executeRawUnsafe('VACUUM ANALYZE audit_event');

  const mid = new Date(start + (EVENTS / 2) * 250);
  const cases: [string, AuditQuery][] = [
    ['newest page, no filter', {}],
    ['by actor', { actorId: 'u_17' }],
    ['by action', { action: 'review.reject' }],
    ['by subject', { subjectType: 'request', subjectId: 'req_4242' }],
    ['time range (1 hour, mid-history)', { from: mid, to: new Date(mid.getTime() + 3600_000) }],
    ['text (rare word)', { text: 'needle' }],
    ['text (common word)', { text: 'hay' }],
    [
      'actor + action + time range',
      { actorId: 'u_19', action: 'request.dispatch', from: new Date(start), to: mid },
    ],
    [
      'by actor, page 50 (cursor)',
      { actorId: 'u_17', cursor: String(Math.max(1, EVENTS - 50 * 50 * USERS)) },
    ],
  ];
  const rows: string[] = [];
  for (const [name, q] of cases) {
    const times: number[] = [];
    let n = 0;
    for (let r = 0; r < RUNS; r++) {
      const t = performance.now();
      n = (await queryAudit(db.prisma, { limit: 50, ...q })).items.length;
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)]!;
    rows.push(`| ${name} | ${n} | ${median.toFixed(1)} | ${times.at(-1)!.toFixed(1)} |`);
    console.log(name, n, median.toFixed(1));
  }
  const tv = performance.now();
  const v = await verifyAuditChain(db.prisma);
  const verifySeconds = (performance.now() - tv) / 1000;
  if (!v.ok)
    throw new Error(
      `chain does not verify: ${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}`,
    );
  const rate = Math.round(v.count / verifySeconds);
  console.log('verify', v.count, verifySeconds.toFixed(1), rate);

  const section = [
    '## Control plane: audit',
    '',
    `\`node --import tsx bench/audit.ts\` on PostgreSQL 15 (127.0.0.1, 2 cores), ${EVENTS.toLocaleString('en-US')} hash-chained events`,
    `(${USERS} actors, ${ACTIONS.length} actions, ${REQUESTS.toLocaleString('en-US')} subjects), loaded in ${loadSeconds.toFixed(0)} s with the chain computed in process.`,
    `Filtered pages of 50 through \`queryAudit\` (the service the API uses), newest first, keyset on seq; median and worst of ${RUNS} runs.`,
    '',
    '| query | rows | median ms | max ms |',
    '|---|---:|---:|---:|',
    ...rows,
    '',
    `Chain verification (\`verifyAuditChain\`, batches of 5,000 through Prisma): ${v.count.toLocaleString('en-US')} events in ${verifySeconds.toFixed(1)} s = ${rate.toLocaleString('en-US')} events/s.`,
    '',
  ].join('\n');
  if (!process.argv.includes('--no-write')) await writeSection(section);
  console.log(section);
} finally {
  await db.cleanup();
}
