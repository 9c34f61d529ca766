/**
 * Request detail benchmark: what `GET /api/requests/{id}` answers (`getRequest` and the JSON the route sends)
 * for a request over 1,000 targets whose outputs are 50 KiB each, with previews (each output cut in SQL to
 * OUTPUT_PREVIEW_BYTES, its digest read from its column) against the full-output read it replaced (every
 * execution with its whole stored output: the old query, kept here as the baseline and measured in the same
 * run on the same rows). Also the browser's share: parsing that JSON with the protocol's RequestDetail schema.
 * Medians of --runs after a warm-up. Writes the `## Control plane: request detail` section of docs/benchmarks.md.
 *
 *   node --import tsx bench/request-detail.ts [--runs 9] [--targets 1000] [--kib 50] [--db postgres|pglite] [--no-write]
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { createTestDatabase, type TestDatabase } from '@pyreach/db/testing';
import { RequestDetail } from '@pyreach/protocol/api';
import { OUTPUT_PREVIEW_BYTES } from '@pyreach/protocol/results';
import * as requests from '../apps/web/src/server/services/requests';
import { requestWorld, testKeyPair } from '../test/support/services';
import { medianTime, writeSection } from './support';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const RUNS = Number(arg('runs', '9'));
const TARGETS = Number(arg('targets', '1000'));
const KIB = Number(arg('kib', '50'));
const KIND = arg('db', 'postgres') === 'pglite' ? 'pglite' : 'postgres';

/** Log-like lines with a random field each (so TOAST compresses them about as well as real output). */
function outputOf(k: number): string {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < KIB * 1024; i++) {
    const line = `2026-12-04T02:00:${String(i % 60).padStart(2, '0')} worker-${k} item ${i} ${randomBytes(12).toString('hex')} ok\n`;
    lines.push(line);
    size += line.length;
  }
  return lines.join('').slice(0, KIB * 1024);
}

/** A request over TARGETS processes of one agent, planned, every execution ended with KIB of output. */
async function seed(db: TestDatabase): Promise<string> {
  const { prisma } = db;
  const world = await requestWorld(prisma, { env: 'bench', n: TARGETS, attestation: testKeyPair() });
  const req = await world.approved({ code: 'print(report())', reason: 'bench: request detail' });
  const ids = (await prisma.execution.findMany({ where: { requestId: req.id }, select: { id: true } })).map(
    (e) => e.id,
  );
  // Ended as a result report leaves them (the digest trigger runs on each write of the output).
  for (let i = 0; i < ids.length; i += 50)
    await prisma.$transaction(
      ids.slice(i, i + 50).map((id, j) => {
        const output = outputOf(i + j);
        return prisma.execution.update({
          where: { id },
          data: {
            state: 'succeeded',
            output,
            outputBytes: Buffer.byteLength(output),
            result: { ok: true },
            finishedAt: new Date(),
          },
        });
      }),
    );
  return req.id;
}

/** The read this change replaced: every execution with its whole stored output (as the old getRequest did). */
async function fullDetail(db: TestDatabase, id: string) {
  return db.prisma.injectionRequest.findUnique({
    where: { id },
    include: { reviews: { orderBy: { createdAt: 'asc' } }, executions: { orderBy: { queuedAt: 'asc' } } },
  });
}

const db = await createTestDatabase(KIND, { poolSize: 2 });
try {
  const t0 = performance.now();
  const id = await seed(db);
  const seedSeconds = (performance.now() - t0) / 1000;
  const fullJson = JSON.stringify({ request: await fullDetail(db, id) });
  const previewJson = JSON.stringify({ request: await requests.getRequest(db.prisma, id) });
  const fullMs = await medianTime(RUNS, async () => JSON.stringify({ request: await fullDetail(db, id) }));
  const previewMs = await medianTime(RUNS, async () =>
    JSON.stringify({ request: await requests.getRequest(db.prisma, id) }),
  );
  // The browser's share of the new answer: JSON.parse and the RequestDetail schema (the typed client's parse).
  const parseMs = await medianTime(RUNS, async () =>
    RequestDetail.parse((JSON.parse(previewJson) as { request: unknown }).request),
  );
  const fullParseMs = await medianTime(RUNS, async () => JSON.parse(fullJson));
  const mb = (s: string) => (Buffer.byteLength(s) / 1e6).toFixed(2);
  const figures = {
    targets: TARGETS,
    outputKiB: KIB,
    previewBytes: OUTPUT_PREVIEW_BYTES,
    fullBytes: Buffer.byteLength(fullJson),
    previewBytesTotal: Buffer.byteLength(previewJson),
    fullMs: +fullMs.toFixed(1),
    previewMs: +previewMs.toFixed(1),
    fullJsonParseMs: +fullParseMs.toFixed(1),
    previewParseMs: +parseMs.toFixed(1),
  };
  console.log(JSON.stringify(figures));
  const section = [
    '## Control plane: request detail',
    '',
    `\`node --import tsx bench/request-detail.ts --db ${KIND}\` (${KIND === 'postgres' ? 'PostgreSQL 15 on 127.0.0.1' : 'PGlite, in process'}, 2 shared cores, load average`,
    `${loadavg()[0]!.toFixed(1)} when it ended): \`GET /api/requests/{id}\` as the route runs it (the service and the JSON it`,
    `sends; no HTTP) for one request over ${TARGETS.toLocaleString('en')} targets, every execution ended with ${KIB} KiB of log-like`,
    `output (seeded in ${seedSeconds.toFixed(0)} s). Before: every execution with its whole stored output (the old query,`,
    `kept in the bench and measured in the same run on the same rows). After: each output cut to its first`,
    `${OUTPUT_PREVIEW_BYTES.toLocaleString('en')} bytes in SQL (\`left()\`), with \`outputPreview\` and \`outputDigest\` (stored, kept by a trigger).`,
    `Median of ${RUNS} runs after a warm-up.`,
    '',
    '| answer | JSON bytes | server ms | browser parse ms |',
    '|---|---:|---:|---:|',
    `| before: whole outputs | ${mb(fullJson)} MB | ${fullMs.toFixed(1)} | ${fullParseMs.toFixed(1)} (JSON.parse only) |`,
    `| after: previews | ${mb(previewJson)} MB | ${previewMs.toFixed(1)} | ${parseMs.toFixed(1)} (JSON.parse + RequestDetail) |`,
    `| ratio | ${(Buffer.byteLength(fullJson) / Buffer.byteLength(previewJson)).toFixed(1)}× smaller | ${(fullMs / previewMs).toFixed(1)}× faster | |`,
    '',
    '```json',
    JSON.stringify(figures),
    '```',
    '',
    'The whole output of one execution stays the download (`GET /api/requests/{id}/executions/{executionId}/output`),',
    'read by the page on Expand or Copy and by the CLI for each execution whose `outputPreview` is true.',
    '',
  ].join('\n');
  if (!process.argv.includes('--no-write')) await writeSection(section);
  console.log(section);
} finally {
  await db.cleanup();
}
