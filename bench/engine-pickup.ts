/**
 * Pickup latency into a busy target: native PEP 768 writer vs the sys.remote_exec backend (a tracer
 * process per run), measured in the same run against the same target.
 * Two figures per backend, both ending at the harness's own pickedUpAt timestamp (µs, wall clock, taken
 * inside the target when it starts running our file):
 *   request→pickup: from calling runInTarget (includes /proc inspection and staging);
 *   trigger→pickup: from the end of staging (onState('staged')) — the cost of the trigger itself
 *                   (memory writes vs spawning a tracer) plus the time to reach a safe point.
 * Run: node --import tsx bench/engine-pickup.ts [rounds]
 */
import { runInTarget } from '../packages/remote-exec/src/index';
import { startPython } from '../test/support/python';

const rounds = Number(process.argv[2] ?? 15);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const target = await startPython('busy.py');
try {
  const now = (): number => performance.timeOrigin + performance.now();
  const parseIso = (s: string): number => {
    const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?Z$/.exec(s)!;
    return Date.parse(m[1] + 'Z') + Number(m[2] ?? 0) * 1000;
  };
  const lat: Record<'native' | 'sys', number[]> = { native: [], sys: [] };
  const trig: Record<'native' | 'sys', number[]> = { native: [], sys: [] };
  const total: Record<'native' | 'sys', number[]> = { native: [], sys: [] };
  // warm-up (ELF cache, tsx, page cache)
  for (const backend of ['native', 'sys'] as const) await runInTarget({ pid: target.pid, backend, code: 'pass' });
  for (let i = 0; i < rounds; i++) {
    for (const backend of ['native', 'sys'] as const) {
      const t0 = now();
      let staged = 0;
      const r = await runInTarget({ pid: target.pid, backend, code: 'result = 1', onState: (s) => s === 'staged' && (staged = now()) });
      if (r.status !== 'succeeded') throw new Error(`${backend}: ${JSON.stringify(r)}`);
      const picked = parseIso(r.pickedUpAt!);
      lat[backend].push(picked - t0);
      trig[backend].push(picked - staged);
      total[backend].push(now() - t0);
    }
  }
  const n = median(lat.native);
  const s = median(lat.sys);
  console.log(JSON.stringify({
    rounds,
    requestToPickupMedianMs: { native: +n.toFixed(2), sys: +s.toFixed(2) },
    triggerToPickupMedianMs: { native: +median(trig.native).toFixed(2), sys: +median(trig.sys).toFixed(2) },
    ratioTriggerSysOverNative: +(median(trig.sys) / median(trig.native)).toFixed(1),
    roundTripMedianMs: { native: +median(total.native).toFixed(1), sys: +median(total.sys).toFixed(1) },
    ratioRequestSysOverNative: +(s / n).toFixed(1),
  }, null, 2));
} finally {
  await target.kill();
}
