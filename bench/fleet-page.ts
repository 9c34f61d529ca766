/**
 * Fleet page benchmark: the dashboard's fleet API (`fleetView`, what GET /api/ui/fleet runs) on a fleet of
 * 5,000 simulated processes (50 hosts × 100, seeded through the real services: join token, enrolment,
 * inventory snapshot) against a 50-process baseline in the same run, so the ratio shows whether the cost
 * follows the page or the fleet. Then the new-request form's target picker: a filter round trip as the route
 * runs it (the query string through FleetQuery, `fleetView` at the picker's page of 25, the JSON answer), as
 * a person types, median and p99 at 5,000 vs 50, printed as JSON. Writes the `## Control plane: fleet page`
 * section of docs/benchmarks.md.
 *
 *   node --import tsx bench/fleet-page.ts [--runs 15] [--picker-runs 60] [--db postgres|pglite] [--no-write]
 */
import { loadavg } from 'node:os';
import { medianTime, samples, writeSection } from './support';
import { createTestDatabase, type TestDatabase } from '@pyreach/db/testing';
import { FleetQuery } from '@pyreach/protocol/routes';
import { fleetView, type FleetFilter } from '../apps/web/src/server/services/inventory';
import { pyProcess, seedAgent, seedUser } from '../test/support/services';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const RUNS = Number(arg('runs', '15'));
const PICKER_RUNS = Number(arg('picker-runs', '60'));
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

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;

/** One picker filter round trip as GET /api/ui/fleet runs it: query string → FleetQuery → fleetView → JSON. */
async function pickerRoundTrip(db: TestDatabase, q: string): Promise<number> {
  const query = FleetQuery.parse(q ? { q, limit: '25' } : { limit: '25' });
  const { label, ...filter } = query;
  const page = await fleetView(db.prisma, { ...filter, labels: label }, () => false);
  return JSON.stringify(page).length;
}

/** What a person types into the picker, keystroke by keystroke after the debounce: one query each. */
const PICKER_QUERIES = (big: boolean) => [
  '',
  'wor',
  'worker-4',
  big ? 'worker-4217.py' : 'worker-17.py',
  'svc3 q2',
];

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
    const a = await medianTime(RUNS, () => fleetView(small.prisma, filter(false), () => false));
    const b = await medianTime(RUNS, () => fleetView(big.prisma, filter(true), () => false));
    const total = (await fleetView(big.prisma, filter(true), () => false)).page.total;
    rows.push(`| ${name} | ${total} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(1)}× |`);
    console.log(name, total, a.toFixed(1), b.toFixed(1));
  }
  const picker: Record<string, { median: number; p99: number; runs: number }> = {};
  for (const [label, db, large] of [
    ['50', small, false],
    ['5000', big, true],
  ] as const) {
    const all: number[] = [];
    for (const q of PICKER_QUERIES(large))
      all.push(...(await samples(() => pickerRoundTrip(db, q), Math.ceil(PICKER_RUNS / 5))));
    all.sort((a, b) => a - b);
    picker[label] = { median: +pct(all, 0.5).toFixed(1), p99: +pct(all, 0.99).toFixed(1), runs: all.length };
  }
  const pickerJson = JSON.stringify({ pickerFilterRoundTripMs: picker });
  console.log(pickerJson);
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
    "The new-request form's target picker asks the same query for a page of 25 as a person types",
    `(${PICKER_QUERIES(true)
      .map((q) => (q ? `\`${q}\`` : 'nothing yet'))
      .join(', ')}; one query each after its 250 ms debounce). A filter round trip`,
    'as the route runs it (query string through `FleetQuery`, `fleetView`, the JSON answer; no HTTP), over',
    `${PICKER_RUNS} runs per fleet in ms (p99 of ${PICKER_RUNS} samples is about their slowest; load average`,
    `${loadavg()[0]!.toFixed(1)} on the shared machine when it ended):`,
    '',
    '| fleet | median ms | p99 ms | runs |',
    '|---|---:|---:|---:|',
    `| 50 processes | ${picker['50']!.median} | ${picker['50']!.p99} | ${picker['50']!.runs} |`,
    `| 5,000 processes | ${picker['5000']!.median} | ${picker['5000']!.p99} | ${picker['5000']!.runs} |`,
    '',
    '```json',
    pickerJson,
    '```',
    '',
    'Before, the form fetched up to 2,000 processes (`GET /api/fleet/processes?limit=2000`) and filtered them in',
    'the browser: a fleet past 2,000 had processes the form could not offer.',
    '',
  ].join('\n');
  if (!process.argv.includes('--no-write')) await writeSection(section);
  console.log(section);
} finally {
  await small.cleanup();
  await big.cleanup();
}
