/**
 * One stacks dump read from outside (readStacks over /proc/PID/mem) vs injecting the library script
 * `threads.dump_stacks` through the engine (runInTarget), into the same target in the same run, and the
 * target's serving-loop stall during each. The target (test/fixtures/python/loop_latency.py) serves a request
 * every millisecond on its main thread and reports, per 20 ms window, the longest gap between iterations;
 * the stall of an operation is the longest gap of the windows that overlap it (wall clock).
 * Figures: medians over the rounds; the baseline is the median window gap while nothing is done.
 * Run: node --import tsx bench/inspect.ts [rounds]
 */
import { readStacks, runInTarget } from '../packages/remote-exec/src/index';
import { dumpStacks } from '../packages/scripts/src/library/threads';
import { startPython } from '../test/support/python';

const rounds = Number(process.argv[2] ?? 15);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const wall = (): number => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const target = await startPython('loop_latency.py');
try {
  const windows = (): { start: number; end: number; gap: number }[] =>
    target
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('W '))
      .map((l) => {
        const [, s, e, g] = l.split(' ');
        return { start: Number(s), end: Number(e), gap: Number(g) };
      });
  const stallDuring = async (from: number, to: number): Promise<number> => {
    // Wait until the target has reported the window that covers the end of the operation.
    for (let i = 0; i < 200 && !windows().some((w) => w.end >= to); i++) await sleep(5);
    const hit = windows().filter((w) => w.end >= from && w.start <= to);
    return Math.max(...hit.map((w) => w.gap));
  };
  const code = dumpStacks.source;
  const params = { maxFrames: 50 };
  // Warm-up: ELF cache, tsx, page cache, the engine's first staging.
  await readStacks({ pid: target.pid });
  const warm = await runInTarget({ pid: target.pid, code, params });
  if (warm.status !== 'succeeded') throw new Error(`injection failed: ${JSON.stringify(warm)}`);
  const quietFrom = wall();
  await sleep(1000);
  const baseline = windows()
    .filter((w) => w.start >= quietFrom)
    .map((w) => w.gap);

  const res = {
    stacks: { ms: [] as number[], stall: [] as number[] },
    stacksWithStates: { ms: [] as number[], stall: [] as number[] },
    inject: { ms: [] as number[], stall: [] as number[] },
  };
  let threads = 0;
  let bytesRead = 0;
  for (let i = 0; i < rounds; i++) {
    for (const kind of ['stacks', 'stacksWithStates', 'inject'] as const) {
      await sleep(60); // let the previous operation's windows close
      const from = wall();
      const t0 = performance.now();
      if (kind === 'inject') {
        const r = await runInTarget({ pid: target.pid, code, params });
        if (r.status !== 'succeeded') throw new Error(`injection failed: ${JSON.stringify(r)}`);
      } else {
        const r = await readStacks({ pid: target.pid, states: kind === 'stacksWithStates' });
        if (r.status !== 'complete') throw new Error(`stacks: ${JSON.stringify(r.errors)}`);
        threads = r.threads.length;
        bytesRead = r.bytesRead;
      }
      const ms = performance.now() - t0;
      const to = wall();
      res[kind].ms.push(ms);
      res[kind].stall.push(await stallDuring(from, to));
    }
  }
  const m = (xs: number[], d = 2): number => +median(xs).toFixed(d);
  console.log(
    JSON.stringify(
      {
        rounds,
        targetThreads: threads,
        bytesReadPerDump: bytesRead,
        dumpMedianMs: {
          readStacks: m(res.stacks.ms),
          readStacksWithStates: m(res.stacksWithStates.ms),
          injectDumpStacks: m(res.inject.ms),
        },
        ratioInjectOverRead: +(median(res.inject.ms) / median(res.stacks.ms)).toFixed(1),
        servingLoopLongestGapMedianMs: {
          baseline: m(baseline),
          duringReadStacks: m(res.stacks.stall),
          duringReadStacksWithStates: m(res.stacksWithStates.stall),
          duringInjectDumpStacks: m(res.inject.stall),
        },
        stallMaxMs: {
          duringReadStacks: +Math.max(...res.stacks.stall).toFixed(2),
          duringInjectDumpStacks: +Math.max(...res.inject.stall).toFixed(2),
        },
      },
      null,
      2,
    ),
  );
} finally {
  await target.kill();
}
