import assert from 'node:assert/strict';
import { statSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { discover, runInTarget } from '../src/index';
import {
  ensureTestUser,
  pythonPath,
  pythonRoot,
  startNonPython,
  startPython,
  type PyTarget,
} from '../../../test/support/python';
import { BACKENDS, settledLeftovers, sleep } from './helpers';

// Generous but bounded: a loaded 2-core machine can take a while to schedule a target.
const PICKUP_MS = 15_000;

before(() => {
  pythonPath();
  ensureTestUser();
});

async function withTarget<T>(t: PyTarget, fn: (t: PyTarget) => Promise<T>): Promise<T> {
  try {
    return await fn(t);
  } finally {
    await t.kill();
  }
}

for (const backend of BACKENDS) {
  describe(`remote exec with the ${backend} backend`, () => {
    it('makes a service logging ERROR every 0.2 s show its DEBUG lines after the level is lowered remotely', async () => {
      await withTarget(await startPython('log_service.py'), async (t) => {
        await t.waitForStdout('ERROR main request 2');
        assert.doesNotMatch(t.stdout(), /DEBUG/);
        const r = await runInTarget({
          pid: t.pid,
          backend,
          code: 'import logging\nlogging.getLogger("main").setLevel(logging.DEBUG)\nprint("level now", logging.getLogger("main").level)',
          pickupTimeoutMs: PICKUP_MS,
        });
        assert.equal(r.status, 'succeeded', JSON.stringify(r));
        assert.equal(r.output, 'level now 10\n');
        assert.equal(r.backend, backend);
        const mark = t.stdout().length;
        await t.waitForStdout(/^DEBUG main context for request \d+: user=alice/, 10_000, mark);
        assert.deepEqual(await settledLeftovers(t.pid), []);
      });
    });

    it('runs code in a target owned by an unprivileged user while the engine runs as root: the staging directory stays root-owned, the user gets only its inputs and outputs', async () => {
      const user = ensureTestUser();
      await withTarget(await startPython('idle.py', { user: true }), async (t) => {
        const seen: Record<string, { uid: number; mode: number }> = {};
        const r = await runInTarget({
          pid: t.pid,
          backend,
          code: 'import os\nresult = {"uid": os.getuid()}',
          pickupTimeoutMs: PICKUP_MS,
          onState: (s) => {
            if (s !== 'staged') return;
            for (const n of readdirSync(`/proc/${t.pid}/root/tmp`)) {
              if (!/^pyreach-[0-9a-f]{16}$/.test(n)) continue;
              const dir = `/proc/${t.pid}/root/tmp/${n}`;
              const st = statSync(dir);
              if (st.mtimeMs < Date.now() - 10_000) continue; // not this run's (a crashed earlier run's)
              seen['.'] = { uid: st.uid, mode: st.mode & 0o7777 };
              for (const f of readdirSync(dir)) {
                const fs = statSync(`${dir}/${f}`);
                seen[f] = { uid: fs.uid, mode: fs.mode & 0o7777 };
              }
            }
          },
        });
        assert.equal(r.status, 'succeeded', JSON.stringify(r));
        assert.deepEqual(r.result, { uid: user.uid });
        const u = (mode: number) => ({ uid: user.uid, mode });
        const root = (mode: number) => ({ uid: 0, mode });
        assert.deepEqual(seen, {
          '.': root(0o711),
          'run.py': u(0o400),
          'code.py': u(0o400),
          'params.json': u(0o400),
          'job.json': root(0o644),
          ctl: root(0o644),
          'claim.txt': u(0o600),
          'picked.json': u(0o600),
          'out.txt': u(0o600),
          'result.json': u(0o600),
        });
        assert.deepEqual(await settledLeftovers(t.pid), []);
      });
    });

    it('discovers and injects into a container-style target with its own pid and mount namespace', async () => {
      await withTarget(await startPython('idle.py', { style: 'container' }), async (t) => {
        const [p] = await discover({ pids: [t.pid] });
        assert.ok(p, 'container target discovered');
        assert.equal(p.inContainer, true);
        assert.equal(p.nsPid, 1);
        assert.equal(p.pythonVersion?.startsWith('3.14.'), true);
        assert.equal(p.remoteDebugEnabled, true);
        // Its one thread, by its id inside the namespace, named from the kernel's comm (found by NSpid).
        assert.equal(p.threads.length, 1);
        assert.deepEqual({ ...p.threads[0], name: null }, { tid: 1, main: true, name: null });
        assert.match(p.threads[0]!.name ?? '', /^python/);
        const r = await runInTarget({
          pid: t.pid,
          expectStartTime: p.startTime,
          backend,
          code: 'import os\nresult = {"pid": os.getpid(), "script": open("/proc/self/cmdline","rb").read().split(b"\\0")[1].decode()}',
          pickupTimeoutMs: PICKUP_MS,
        });
        if (backend === 'sys') {
          // The tracer would be the container's interpreter, which the container's root controls.
          assert.equal(r.status, 'refused', JSON.stringify(r));
          assert.equal(r.errorCode, 'UNTRUSTED_INTERPRETER');
          assert.match(r.message ?? '', /container.*native backend/s);
        } else {
          assert.equal(r.status, 'succeeded', JSON.stringify(r));
          assert.deepEqual(r.result, { pid: 1, script: t.scriptInTarget });
        }
        assert.deepEqual(await settledLeftovers(t.pid, t.rootOnHost), []);
      });
    });

    it('finds and injects into a target whose /proc/PID/exe is the dynamic loader', async () => {
      await withTarget(await startPython('idle.py', { style: 'loader' }), async (t) => {
        const [p] = await discover({ pids: [t.pid] });
        assert.ok(p, 'loader-style target discovered');
        assert.match(p.exe, /ld-linux-x86-64\.so\.2$/);
        assert.equal(p.pythonVersion?.startsWith('3.14.'), true);
        const r = await runInTarget({
          pid: t.pid,
          backend,
          code: 'result = 6 * 7',
          pickupTimeoutMs: PICKUP_MS,
        });
        assert.equal(r.status, 'succeeded', JSON.stringify(r));
        assert.equal(r.result, 42);
      });
    });

    it('refuses a target started with PYTHON_DISABLE_REMOTE_DEBUG=1 and stages nothing', async () => {
      await withTarget(await startPython('idle.py', { disableRemoteDebug: true }), async (t) => {
        const [p] = await discover({ pids: [t.pid] });
        assert.equal(p?.remoteDebugEnabled, false);
        let staged = false;
        const r = await runInTarget({
          pid: t.pid,
          backend,
          code: 'print(1)',
          onState: () => (staged = true),
        });
        assert.equal(r.status, 'refused');
        assert.equal(r.errorCode, 'REMOTE_DEBUG_DISABLED');
        assert.match(r.message ?? '', /PYTHON_DISABLE_REMOTE_DEBUG/);
        assert.equal(staged, false);
        assert.deepEqual(await settledLeftovers(t.pid), []);
      });
    });

    it('reports exceptions, SystemExit and KeyboardInterrupt in the code as failed with a traceback while the target keeps running', async () => {
      await withTarget(await startPython('log_service.py'), async (t) => {
        for (const [code, type] of [
          ['def f():\n    raise ValueError("bad value")\nf()', 'ValueError'],
          ['import sys\nsys.exit(3)', 'SystemExit'],
          ['raise KeyboardInterrupt', 'KeyboardInterrupt'],
        ] as const) {
          for (const inline of [false, true]) {
            const r = await runInTarget({ pid: t.pid, backend, code, inline, pickupTimeoutMs: PICKUP_MS });
            assert.equal(r.status, 'failed', JSON.stringify(r));
            assert.equal(r.errorCode, 'USER_EXCEPTION');
            assert.equal(r.error?.type, type);
            assert.match(r.error?.traceback ?? '', /Traceback \(most recent call last\)/);
            assert.match(r.error?.traceback ?? '', new RegExp(type));
          }
        }
        const mark = t.stdout().length;
        await t.waitForStdout('ERROR main request', 10_000, mark);
        assert.equal(t.isRunning(), true);
        assert.doesNotMatch(t.stderr(), /Traceback/);
      });
    });

    it('cuts output over the cap with a visible marker, round-trips non-ASCII text and delivers params intact', async () => {
      await withTarget(await startPython('idle.py'), async (t) => {
        const params = { name: 'Zoë 日本 🐍', n: 3, nested: { list: [1, 2.5, null, true], quote: '"\'\\' } };
        const r = await runInTarget({
          pid: t.pid,
          backend,
          code: 'print("grüße ✓ 🐍")\nresult = params',
          params,
          pickupTimeoutMs: PICKUP_MS,
        });
        assert.equal(r.status, 'succeeded', JSON.stringify(r));
        assert.equal(r.output, 'grüße ✓ 🐍\n');
        assert.deepEqual(r.result, params);

        const big = await runInTarget({
          pid: t.pid,
          backend,
          code: 'for i in range(5000):\n    print("é" * 99)',
          outputCapBytes: 10_000,
          pickupTimeoutMs: PICKUP_MS,
        });
        assert.equal(big.status, 'succeeded', JSON.stringify({ ...big, output: big.output.length }));
        assert.equal(big.outputTruncated, true);
        assert.match(big.output, /\[pyreach: output truncated at 10000 bytes\]\n$/);
        assert.ok(Buffer.byteLength(big.output) < 10_100);
        assert.doesNotMatch(big.output, /\uFFFD/);
        // Every byte printed is either kept (before the marker) or counted as dropped.
        const kept = Buffer.byteLength(
          big.output.replace(/\n\[pyreach: output truncated at 10000 bytes\]\n$/, ''),
        );
        assert.equal(kept + (big.outputDroppedBytes ?? -1), 5000 * Buffer.byteLength('é'.repeat(99) + '\n'));

        const repr = await runInTarget({
          pid: t.pid,
          backend,
          code: 'result = {1, 2}',
          pickupTimeoutMs: PICKUP_MS,
        });
        assert.equal(repr.result, '{1, 2}');
      });
    });

    it('streams output while the code still runs', async () => {
      await withTarget(await startPython('idle.py'), async (t) => {
        const chunks: { at: number; text: string }[] = [];
        const r = await runInTarget({
          pid: t.pid,
          backend,
          code: 'import time\nprint("first")\ntime.sleep(1.5)\nprint("second")',
          pickupTimeoutMs: PICKUP_MS,
          onOutput: (text) => chunks.push({ at: Date.now(), text }),
        });
        const end = Date.now();
        assert.equal(r.status, 'succeeded');
        assert.equal(chunks.map((c) => c.text).join(''), 'first\nsecond\n');
        assert.equal(chunks[0]?.text, 'first\n');
        assert.ok(end - chunks[0]!.at >= 1000, 'first chunk arrived well before the end');
      });
    });

    it('ends target_gone when the target exits while the request waits', async () => {
      await withTarget(await startPython('exit_soon.py', { args: ['1.5'] }), async (t) => {
        // Aimed at the blocked main thread: with auto, the exit timer's own thread would pick the run up.
        const r = await runInTarget({
          pid: t.pid,
          backend,
          thread: 'main',
          code: 'print(1)',
          pickupTimeoutMs: 20_000,
        });
        assert.equal(r.status, 'target_gone', JSON.stringify(r));
        assert.equal(r.errorCode, 'TARGET_GONE');
      });
    });

    it('refuses a process that is not Python with NOT_PYTHON', async () => {
      const p = startNonPython();
      try {
        await sleep(100);
        const r = await runInTarget({ pid: p.pid, backend, code: 'print(1)' });
        assert.equal(r.status, 'refused');
        assert.equal(r.errorCode, 'NOT_PYTHON');
      } finally {
        p.kill();
      }
    });

    it('stops an endless loop at the time budget and the target lives on', async () => {
      await withTarget(await startPython('serving_loop.py'), async (t) => {
        for (const inline of [false, true]) {
          const started = Date.now();
          const r = await runInTarget({
            pid: t.pid,
            backend,
            code: 'while True:\n    pass',
            budgetMs: 1000,
            inline,
            pickupTimeoutMs: PICKUP_MS,
          });
          assert.equal(r.status, 'failed', JSON.stringify(r));
          assert.equal(r.errorCode, 'TIME_BUDGET_EXCEEDED');
          assert.ok(Date.now() - started < 5000);
          const mark = t.stdout().length;
          await t.waitForStdout('COUNT', 5000, mark);
        }
        assert.equal(t.isRunning(), true);
      });
    });
  });
}

describe('thread choice and pending requests', () => {
  let t: PyTarget;
  let mainTid = 0;
  let workerTid = 0;
  before(async () => {
    t = await startPython('blocked_main.py');
    const [, m, w] = t.readyLine!.split(' ');
    mainTid = Number(m);
    workerTid = Number(w);
  });
  after(async () => {
    await t.kill();
  });

  for (const backend of BACKENDS) {
    it(`ends pickup_timeout within the timeout when the main thread (--thread main) is blocked, and cleans up (${backend})`, async () => {
      const started = Date.now();
      const r = await runInTarget({
        pid: t.pid,
        backend,
        thread: 'main',
        code: 'print(1)',
        pickupTimeoutMs: 1500,
      });
      const took = Date.now() - started;
      assert.equal(r.status, 'pickup_timeout', JSON.stringify(r));
      assert.equal(r.errorCode, 'PICKUP_TIMEOUT');
      assert.ok(took < 1500 + 4000, `took ${took} ms`);
      assert.deepEqual(await settledLeftovers(t.pid), []);
    });
  }

  it('withdraws a timed-out request so the next request is not refused as pending', async () => {
    const r = await runInTarget({ pid: t.pid, thread: 'main', code: 'print(1)', pickupTimeoutMs: 500 });
    assert.equal(r.status, 'pickup_timeout');
    const again = await runInTarget({ pid: t.pid, thread: 'main', code: 'print(1)', pickupTimeoutMs: 500 });
    assert.equal(again.status, 'pickup_timeout', JSON.stringify(again));
  });

  it("runs the same code when aimed at the busy worker thread's native id", async () => {
    const [p] = await discover({ pids: [t.pid] });
    assert.deepEqual(p?.threads.map((x) => x.tid).sort(), [mainTid, workerTid].sort());
    assert.equal(p?.threads.find((x) => x.main)?.tid, mainTid);
    const r = await runInTarget({
      pid: t.pid,
      tid: workerTid,
      code: 'import threading\nresult = threading.current_thread().name',
      inline: true,
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(r.result, 'Worker-1');
    assert.equal(r.thread?.tid, workerTid);
  });

  it('refuses a thread id the target does not have', async () => {
    const r = await runInTarget({ pid: t.pid, tid: 999_999_99, code: 'print(1)' });
    assert.equal(r.status, 'refused');
    assert.equal(r.errorCode, 'THREAD_NOT_FOUND');
  });

  it('refuses with PENDING_CONFLICT when another request is still pending on the chosen thread (auto skips it)', async () => {
    // Leave a request of "another tracer" pending on the blocked main thread, then try ours.
    const { openMem, locateRuntime, readMainInterpreter } = await import('../src/runtime');
    const { threadSlot, writeRequest, withdrawRequest } = await import('../src/native');
    const mem = openMem('/proc', t.pid, true);
    const loc = locateRuntime('/proc', t.pid, mem);
    const view = readMainInterpreter(mem, loc, t.pid);
    const slot = threadSlot(loc, view.mainTstate!);
    const foreign = Buffer.from('/nonexistent/other-tracer.py');
    writeRequest(mem, slot, foreign);
    try {
      let staged = false;
      const r = await runInTarget({
        pid: t.pid,
        thread: 'main',
        code: 'print(1)',
        onState: () => (staged = true),
      });
      assert.equal(r.status, 'refused');
      assert.equal(r.errorCode, 'PENDING_CONFLICT');
      assert.equal(staged, false);
      // thread auto leaves that thread to the other tracer and runs on another one; its request stays.
      const auto = await runInTarget({ pid: t.pid, code: 'result = 1', pickupTimeoutMs: PICKUP_MS });
      assert.equal(auto.status, 'succeeded', JSON.stringify(auto));
      assert.equal(auto.pickedUpBy?.tid, workerTid);
      assert.equal(mem.i32(slot.pendingAddr), 1);
      assert.ok(mem.read(slot.pathAddr, foreign.length).equals(foreign));
    } finally {
      withdrawRequest(mem, slot, foreign);
      mem.close();
    }
  });
});

describe('serving loop under injection', () => {
  const counts = (out: string, from: number, to: number): number[] =>
    [...out.matchAll(/^COUNT (\d+) ([\d.]+)$/gm)]
      .filter((m) => Number(m[2]) * 1000 >= from && Number(m[2]) * 1000 <= to)
      .map((m) => Number(m[1]));

  for (const backend of BACKENDS) {
    it(`keeps counting during a 2-second CPU-heavy injection by default and stops for its duration inline (${backend})`, async () => {
      await withTarget(await startPython('serving_loop.py'), async (t) => {
        const heavy =
          'import time\nend = time.monotonic() + 2\nn = 0\nwhile time.monotonic() < end:\n    n += 1\nresult = n';
        const bg = await runInTarget({ pid: t.pid, backend, code: heavy, pickupTimeoutMs: PICKUP_MS });
        assert.equal(bg.status, 'succeeded', JSON.stringify(bg));
        await sleep(300);
        const from = Date.parse(bg.pickedUpAt!) + 200;
        const to = Date.parse(bg.finishedAt!) - 200;
        const during = counts(t.stdout(), from, to);
        assert.ok(
          during.length >= 3,
          `the loop kept reporting while the code ran (${during.length} reports)`,
        );
        assert.ok(during[during.length - 1]! > during[0]!, 'and kept counting');

        const il = await runInTarget({
          pid: t.pid,
          backend,
          code: heavy,
          inline: true,
          pickupTimeoutMs: PICKUP_MS,
        });
        assert.equal(il.status, 'succeeded', JSON.stringify(il));
        assert.equal(il.thread?.name, 'MainThread');
        await sleep(300);
        const duringInline = counts(
          t.stdout(),
          Date.parse(il.pickedUpAt!) + 50,
          Date.parse(il.finishedAt!) - 50,
        );
        assert.deepEqual(duringInline, [], 'no iterations while the main thread ran the code');
        const mark = t.stdout().length;
        await t.waitForStdout('COUNT', 5000, mark);
      });
    });
  }
});

describe('refusals before anything is written', () => {
  it('refuses a path longer than the target accepts with PATH_TOO_LONG and stages nothing', async () => {
    await withTarget(await startPython('idle.py'), async (t) => {
      const r = await runInTarget({ pid: t.pid, code: 'print(1)', stagingDirs: ['/tmp/' + 'x'.repeat(480)] });
      assert.equal(r.status, 'refused');
      assert.equal(r.errorCode, 'PATH_TOO_LONG');
      assert.match(r.message ?? '', /at most 511/);
    });
  });

  it('ends target_gone when the pid now belongs to a process with another start time', async () => {
    await withTarget(await startPython('idle.py'), async (t) => {
      const r = await runInTarget({ pid: t.pid, expectStartTime: '1', code: 'print(1)' });
      assert.equal(r.status, 'target_gone');
      assert.match(r.message ?? '', /another process/);
    });
  });
});

describe('binaries replaced on disk', () => {
  it('finds _PyRuntime by scanning memory for the cookie when the interpreter binary was deleted, and injects', async () => {
    const { spawn } = await import('node:child_process');
    const { copyFileSync, mkdtempSync, rmSync, unlinkSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = mkdtempSync('/tmp/pyreach-del-');
    const bin = join(dir, 'python3.14-gone');
    copyFileSync(pythonPath(), bin);
    const child = spawn(
      bin,
      ['-c', 'import time\nprint("READY", flush=True)\nwhile True: time.sleep(0.02)'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { PYTHONHOME: join(pythonRoot(), 'usr'), PATH: process.env.PATH ?? '/usr/bin:/bin' },
      },
    );
    try {
      await new Promise<void>((res, rej) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('READY') && res());
        child.on('exit', () => rej(new Error('exited')));
      });
      unlinkSync(bin);
      const [p] = await discover({ pids: [child.pid!] });
      assert.equal(p?.pythonVersion?.startsWith('3.14.'), true, JSON.stringify(p));
      const r = await runInTarget({
        pid: child.pid!,
        code: 'result = "still here"',
        pickupTimeoutMs: PICKUP_MS,
      });
      assert.equal(r.status, 'succeeded', JSON.stringify(r));
      assert.equal(r.result, 'still here');
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
