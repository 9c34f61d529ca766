/**
 * Fleet page benchmark: the dashboard's fleet API (`fleetView`, what GET /api/ui/fleet runs) on a fleet of
 * 5,000 simulated processes (50 hosts × 100, seeded through the real services: join token, enrolment,
 * inventory snapshot) against a 50-process baseline in the same run, so the ratio shows whether the cost
 * follows the page or the fleet. Writes the `## Control plane: fleet page` section of docs/benchmarks.md.
 *
 *   node --import tsx bench/fleet-page.ts [--runs 15] [--db postgres|pglite] [--no-write]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '@pyreach/db/testing';
import { fleetView, type FleetFilter } from '../apps/web/src/server/services/inventory';
import { pyProcess, seedAgent, seedUser } from '../test/support/services';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const RUNS = Number(arg('runs', '15'));
const KIND = arg('db', 'postgres') === 'pglite' ? 'pglite' : 'postgres';
const PER_HOST = 100;

async function seedFleet(db: TestDatabase, processes: number): Promise<number> {
  const admin = await seedUser(db.prisma, 'admin');
  const t = performance.now();
  const hosts = Math.max(1, Math.ceil(processes / PER_HOST));
  for (let h = 0; h < hosts; h++) {
    const n = Math.min(PER_HOST, processes - h * PER_HOST);
    await seedAgent(db.prisma, admin, {
      hostname: `node-${String(h).padStart(3, '0')}`,
      labels: { env: h % 5 === 0 ? 'staging' : 'prod', rack: `r${h % 8}` },
      processes: Array.from({ length: n }, (_, i) => {
        const k = h * PER_HOST + i;
        return pyProcess(10_000 + i, {
          cmdline: ['/usr/bin/python3.14', '-u', `/srv/svc/worker-${k}.py`, '--queue', `q${k % 7}`],
          user: `svc${k % 13}`,
          remoteDebugEnabled: k % 10 === 3 ? false : true,
          threads: Array.from({ length: 1 + (k % 6) }, (_, j) => ({ tid: 10_000 + i + j, main: j === 0 })),
        });
      }),
    });
  }
  return (performance.now() - t) / 1000;
}

async function median(fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up (plan cache, connection)
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

const cases: [string, (big: boolean) => FleetFilter][] = [
  ['first page (100 rows)', () => ({ limit: 100 })],
  ['text filter (one script)', (big) => ({ q: big ? 'worker-4217.py' : 'worker-17.py', limit: 100 })],
  ['text filter (two words, many rows)', () => ({ q: 'svc3 q2', limit: 100 })],
  ['label filter env=staging', () => ({ labels: { env: 'staging' }, limit: 100 })],
  ['remote debug off', () => ({ debug: 'off', limit: 100 })],
  ['page 40 (offset 3,900)', (big) => ({ offset: big ? 3900 : 0, limit: 100 })],
];

const small = await createTestDatabase(KIND, { poolSize: 2 });
const big = await createTestDatabase(KIND, { poolSize: 2 });
try {
  await seedFleet(small, 50);
  const seedSeconds = await seedFleet(big, 5000);
  const rows: string[] = [];
  for (const [name, filter] of cases) {
    const a = await median(() => fleetView(small.prisma, filter(false), () => false));
    const b = await median(() => fleetView(big.prisma, filter(true), () => false));
    const total = (await fleetView(big.prisma, filter(true), () => false)).page.total;
    rows.push(`| ${name} | ${total} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(1)}× |`);
    console.log(name, total, a.toFixed(1), b.toFixed(1));
  }
  const section = [
    '## Control plane: fleet page',
    '',
    `\`node --import tsx bench/fleet-page.ts --db ${KIND}\` (${KIND === 'postgres' ? 'PostgreSQL 15 on 127.0.0.1' : 'PGlite, in process'}, 2 shared cores): the fleet API's service`,
    '(`fleetView`, what `GET /api/ui/fleet` runs, filters and paging in SQL) on 5,000 simulated processes',
    `(50 hosts × 100, seeded through join token → enrolment → inventory snapshot in ${seedSeconds.toFixed(0)} s) against a`,
    `50-process fleet in the same run. Median of ${RUNS} runs after a warm-up; ratio = 5,000 / 50.`,
    '',
    '| query | matches (5,000) | 50 procs ms | 5,000 procs ms | ratio |',
    '|---|---:|---:|---:|---:|',
    ...rows,
    '',
    'The browser gets one page (100 processes) whatever the fleet size; before this change the page',
    'fetched every process of every host and filtered in the browser.',
    '',
  ].join('\n');
  if (!process.argv.includes('--no-write')) {
    const file = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
    const doc = await readFile(file, 'utf8').catch(() => '# Benchmarks\n');
    const re = /## Control plane: fleet page\n[\s\S]*?(?=\n## |$)/;
    const next = re.test(doc) ? doc.replace(re, section.trimEnd() + '\n') : `${doc.trimEnd()}\n\n${section}`;
    await writeFile(file, next);
  }
  console.log(section);
} finally {
  await small.cleanup();
  await big.cleanup();
}
