/**
 * Pickup latency into a busy target: native PEP 768 writer vs the sys.remote_exec backend (a tracer
 * process per run), measured in the same run against the same target.
 * Two figures per backend, both ending at the harness's own pickedUpAt timestamp (µs, wall clock, taken
 * inside the target when it starts running our file):
 *   request→pickup: from calling runInTarget (includes /proc inspection and staging);
 *   trigger→pickup: from the end of staging (onState('staged')) — the cost of the trigger itself
 *                   (memory writes vs spawning a tracer) plus the time to reach a safe point.
 * A third figure isolates the tracer side — what the issue compares ("the native path vs spawning a tracer
 * process"): the time to deliver one PEP 768 request, from starting the trigger until it returns. Native: the
 * memory writes into the thread state (runtime already located, as the engine caches it). sys: spawning the
 * target's interpreter to call sys.remote_exec until it exits. Both deliver the same tiny script, and each
 * round waits until the target consumed the request before the next.
 * Run: node --import tsx bench/engine-pickup.ts [rounds]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInTarget } from '../packages/remote-exec/src/index';
import { readPending, threadSlot, writeRequest } from '../packages/remote-exec/src/native';
import { locateRuntime, openMem, readMainInterpreter } from '../packages/remote-exec/src/runtime';
import { pythonPath, startPython } from '../test/support/python';

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
  for (const backend of ['native', 'sys'] as const)
    await runInTarget({ pid: target.pid, backend, code: 'pass' });
  for (let i = 0; i < rounds; i++) {
    for (const backend of ['native', 'sys'] as const) {
      const t0 = now();
      let staged = 0;
      const r = await runInTarget({
        pid: target.pid,
        backend,
        code: 'result = 1',
        onState: (s) => s === 'staged' && (staged = now()),
      });
      if (r.status !== 'succeeded') throw new Error(`${backend}: ${JSON.stringify(r)}`);
      const picked = parseIso(r.pickedUpAt!);
      lat[backend].push(picked - t0);
      trig[backend].push(picked - staged);
      total[backend].push(now() - t0);
    }
  }
  // Tracer side only.
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-bench-'));
  const script = join(dir, 'noop.py');
  writeFileSync(script, 'pass\n');
  const mem = openMem('/proc', target.pid, true);
  const loc = locateRuntime('/proc', target.pid, mem);
  const slot = threadSlot(loc, readMainInterpreter(mem, loc, target.pid).mainTstate!);
  const consumed = async (): Promise<void> => {
    const until = Date.now() + 5000;
    while (readPending(mem, slot) === 1) {
      if (Date.now() > until) throw new Error('target did not consume the request');
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  const tracer: Record<'native' | 'sys', number[]> = { native: [], sys: [] };
  for (let i = 0; i < rounds; i++) {
    let t0 = performance.now();
    writeRequest(mem, slot, Buffer.from(script));
    tracer.native.push(performance.now() - t0);
    await consumed();
    t0 = performance.now();
    const r = spawnSync(pythonPath(), [
      '-I',
      '-c',
      'import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])',
      String(target.pid),
      script,
    ]);
    tracer.sys.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`sys tracer failed: ${r.stderr}`);
    await consumed();
  }
  mem.close();
  rmSync(dir, { recursive: true, force: true });

  const n = median(lat.native);
  const s = median(lat.sys);
  console.log(
    JSON.stringify(
      {
        rounds,
        requestToPickupMedianMs: { native: +n.toFixed(2), sys: +s.toFixed(2) },
        triggerToPickupMedianMs: {
          native: +median(trig.native).toFixed(2),
          sys: +median(trig.sys).toFixed(2),
        },
        ratioTriggerSysOverNative: +(median(trig.sys) / median(trig.native)).toFixed(1),
        roundTripMedianMs: { native: +median(total.native).toFixed(1), sys: +median(total.sys).toFixed(1) },
        ratioRequestSysOverNative: +(s / n).toFixed(1),
        tracerSideTriggerMedianMs: {
          native: +median(tracer.native).toFixed(3),
          sys: +median(tracer.sys).toFixed(2),
        },
        ratioTracerSysOverNative: +(median(tracer.sys) / median(tracer.native)).toFixed(0),
      },
      null,
      2,
    ),
  );
} finally {
  await target.kill();
}
