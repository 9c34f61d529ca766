/**
 * Audit append and report application throughput, single vs batched, on PostgreSQL (issue 15 item 4), with the
 * single path as the baseline measured in the same run:
 *  - audit: N events appended one transaction each (`recordAudit`) vs in batches (`appendAuditMany`), the chain
 *    verified after each;
 *  - reports: N agents' results for N sent executions applied one transaction each (`applyJobEvent`, what every
 *    report cost before batching) vs `applyJobEvents` in batches of --batch (what the gateway does now).
 * Each figure is the median of --rounds rounds (fresh executions each round). Prints a table and one JSON line
 * per row: {"what","mode","n","perSecond","ms","ratio"}; ratio = batched per-second / single per-second.
 *
 *   node --import tsx bench/audit-append.ts [--n 1000] [--batch 500] [--rounds 3]
 */
import { createTestDatabase } from '@pyreach/db/testing';
import type { JobEvent } from '@pyreach/protocol/agent';
import { appendAuditMany, recordAudit, verifyAuditChain } from '../apps/web/src/server/services/audit';
import * as executions from '../apps/web/src/server/services/executions';
import { requestWorld, seedUser, testKeyPair } from '../test/support/services';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 1000);
const BATCH = arg('batch', 500);
const ROUNDS = arg('rounds', 3);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const timed = async (fn: () => Promise<unknown>) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};

const db = await createTestDatabase('postgres');
const prisma = db.prisma;
try {
  const admin = await seedUser(prisma, 'admin');
  const event = (i: number) => ({
    actor: admin,
    action: 'bench.append',
    subjectType: 'bench',
    subjectId: `b${i}`,
    data: { i, note: 'a typical small event' },
  });

  // ---- audit append --------------------------------------------------------------------------------------
  const single: number[] = [];
  const batched: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    single.push(
      await timed(async () => {
        for (let i = 0; i < N; i++) await recordAudit(prisma, event(i));
      }),
    );
    batched.push(
      await timed(async () => {
        for (let i = 0; i < N; i += BATCH)
          await prisma.$transaction((tx) =>
            appendAuditMany(
              tx,
              Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => event(i + k)),
            ),
          );
      }),
    );
  }
  const verified = await verifyAuditChain(prisma);
  if (!verified.ok) throw new Error('the audit chain does not verify after the bench');

  // ---- report application ------------------------------------------------------------------------------
  const world = await requestWorld(prisma, { env: 'bench', n: N, attestation: testKeyPair() });
  const { agent } = world;
  /** N executions sent, ready for their results. */
  const sentJobs = async (): Promise<string[]> =>
    (
      await world.dispatched({ reason: 'bench: report application', concurrency: Math.min(N, 1000) })
    ).sent.map((e) => e.jobId);
  const resultOf = (jobId: string): JobEvent => ({
    type: 'result',
    jobId,
    seq: 1,
    at: new Date().toISOString(),
    result: { status: 'succeeded', output: 'ok\n', finishedAt: new Date().toISOString() },
  });
  const rSingle: number[] = [];
  const rBatched: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const a = await sentJobs();
    rSingle.push(
      await timed(async () => {
        for (const j of a) await executions.applyJobEvent(prisma, agent.id, resultOf(j));
      }),
    );
    const b = await sentJobs();
    rBatched.push(
      await timed(async () => {
        for (let i = 0; i < b.length; i += BATCH) {
          const verdicts = await executions.applyJobEvents(
            prisma,
            b.slice(i, i + BATCH).map((j) => ({ agentId: agent.id, ev: resultOf(j) })),
          );
          if (!verdicts.every((v) => v.ok)) throw new Error('a report was refused');
        }
      }),
    );
  }
  if (!(await verifyAuditChain(prisma)).ok)
    throw new Error('the audit chain does not verify after the bench');

  const rows = [
    { what: 'audit append', mode: 'single', ms: median(single) },
    { what: 'audit append', mode: `batched ×${BATCH}`, ms: median(batched) },
    { what: 'agent reports', mode: 'single', ms: median(rSingle) },
    { what: 'agent reports', mode: `batched ×${BATCH}`, ms: median(rBatched) },
  ].map((r) => ({ ...r, n: N, perSecond: Math.round((N / r.ms) * 1000) }));
  console.log(`\n${N} each, median of ${ROUNDS} rounds (PostgreSQL, chain verified after)\n`);
  console.log('| | mode | ms | per second | batched / single |');
  console.log('|---|---|---:|---:|---:|');
  for (let i = 0; i < rows.length; i += 2) {
    const [s, b] = [rows[i]!, rows[i + 1]!];
    const ratio = b.perSecond / s.perSecond;
    console.log(`| ${s.what} | ${s.mode} | ${s.ms.toFixed(0)} | ${s.perSecond} | |`);
    console.log(`| ${b.what} | ${b.mode} | ${b.ms.toFixed(0)} | ${b.perSecond} | **${ratio.toFixed(1)}×** |`);
    for (const row of [s, b])
      console.log(
        JSON.stringify({ ...row, ms: Math.round(row.ms), ratio: row === b ? Number(ratio.toFixed(2)) : 1 }),
      );
  }
} finally {
  await db.cleanup();
}
