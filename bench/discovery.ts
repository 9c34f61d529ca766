/**
 * One full discovery scan with 200+ Python processes on the host.
 * Starts N cheap Python 3.14 processes (default 200), scans, reports, kills them all.
 * Run: node --import tsx bench/discovery.ts [count]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { discover } from '../packages/remote-exec/src/index';
import { pythonPath } from '../test/support/python';

const count = Number(process.argv[2] ?? 200);
const py = pythonPath();
const children: ChildProcess[] = [];
try {
  for (let i = 0; i < count; i++) {
    children.push(
      spawn(py, ['-S', '-c', 'import time\nwhile True: time.sleep(3600)'], {
        stdio: 'ignore',
        detached: true,
      }),
    );
  }
  const pids = new Set(children.map((c) => c.pid!));
  // wait until every interpreter is initialised (all show up with a readable runtime)
  const deadline = Date.now() + 120_000;
  for (;;) {
    const found = (await discover()).filter(
      (p) => pids.has(p.pid) && p.pythonVersion && p.threads.length > 0,
    );
    if (found.length === count || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const procCount = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;
  const times: number[] = [];
  let last = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    last = (await discover()).length;
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(
    JSON.stringify(
      {
        processesOnHost: procCount,
        pythonFound: last,
        started: count,
        scanMsMedian: +times[2]!.toFixed(1),
        scanMsMin: +times[0]!.toFixed(1),
        scanMsMax: +times[4]!.toFixed(1),
      },
      null,
      2,
    ),
  );
} finally {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
