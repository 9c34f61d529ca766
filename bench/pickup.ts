/**
 * Pickup latency of thread auto vs main into the demo service, in one run, and the cost of wake (issue 12).
 *   auto vs main: demo/service.py (main thread in stop.wait(0.2), two workers in queue.get(timeout=0.2), a
 *     producer in stop.wait(0.25), a refresher in stop.wait(30)); rounds alternate the two modes against the
 *     same process. Figure: request → the harness's own pickedUpAt (µs, taken inside the target).
 *   wake: test/fixtures/python/sleep_main.py (the only thread in time.sleep(3600): nothing ever picks up by
 *     itself). With wakeGraceMs 0 the figure is the whole wake path: survey (two looks at /proc, stacks read
 *     from memory), PTRACE_SEIZE/INTERRUPT/GETREGS/SETREGS/DETACH, and the target's way to its safe point.
 * Run: node --import tsx bench/pickup.ts [rounds]   (default 15)
 */
import { join } from 'node:path';
import { runInTarget } from '../packages/remote-exec/src/index';
import { REPO_ROOT, startPython } from '../test/support/python';

const rounds = Number(process.argv[2] ?? 15);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const now = (): number => performance.timeOrigin + performance.now();
const parseIso = (s: string): number => {
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?Z$/.exec(s)!;
  return Date.parse(m[1] + 'Z') + Number(m[2] ?? 0) * 1000;
};

const demo = await startPython(join(REPO_ROOT, 'demo/service.py'), { readyPattern: 'demo service started' });
const lat: Record<'auto' | 'main', number[]> = { auto: [], main: [] };
const pickers = new Map<string, number>();
try {
  for (const thread of ['auto', 'main'] as const) await runInTarget({ pid: demo.pid, thread, code: 'pass' });
  for (let i = 0; i < rounds; i++) {
    for (const thread of ['auto', 'main'] as const) {
      // A random phase against the service's 0.2/0.25 s wake-ups, so the two modes see the same distribution.
      await new Promise((r) => setTimeout(r, Math.random() * 250));
      const t0 = now();
      const r = await runInTarget({ pid: demo.pid, thread, code: 'result = 1', pickupTimeoutMs: 10_000 });
      if (r.status !== 'succeeded') throw new Error(`${thread}: ${JSON.stringify(r)}`);
      lat[thread].push(parseIso(r.pickedUpAt!) - t0);
      if (thread === 'auto') {
        const name = r.pickedUpBy?.name ?? '?';
        pickers.set(name, (pickers.get(name) ?? 0) + 1);
      }
    }
  }
} finally {
  await demo.kill();
}

const sleeper = await startPython('sleep_main.py');
const wake: number[] = [];
const wakeWithGrace: number[] = [];
try {
  for (let i = 0; i < rounds; i++) {
    for (const grace of [0, 300]) {
      // Let the previous run's threads end and the main thread get back into its sleep.
      await new Promise((r) => setTimeout(r, 300));
      const t0 = now();
      const r = await runInTarget({
        pid: sleeper.pid,
        wake: true,
        wakeGraceMs: grace,
        code: 'result = 1',
        pickupTimeoutMs: 10_000,
      });
      if (r.status !== 'succeeded' || !r.woken?.length) throw new Error(`wake: ${JSON.stringify(r)}`);
      (grace === 0 ? wake : wakeWithGrace).push(parseIso(r.pickedUpAt!) - t0);
    }
  }
  if (!sleeper.isRunning()) throw new Error('the woken target died');
} finally {
  await sleeper.kill();
}

const a = median(lat.auto);
const m = median(lat.main);
console.log(
  JSON.stringify(
    {
      rounds,
      demoRequestToPickupMedianMs: { auto: +a.toFixed(2), main: +m.toFixed(2) },
      ratioMainOverAuto: +(m / a).toFixed(1),
      autoPickedUpBy: Object.fromEntries(pickers),
      wakeRequestToPickupMedianMs: {
        grace0: +median(wake).toFixed(2),
        defaultGrace300: +median(wakeWithGrace).toFixed(2),
      },
    },
    null,
    2,
  ),
);
