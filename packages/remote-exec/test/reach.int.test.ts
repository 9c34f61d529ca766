import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { discover, runInTarget } from '../src/index';
import { pythonPath, startPython, type PyTarget } from '../../../test/support/python';
import { settledLeftovers, sleep } from './helpers';

// Issue 12 (engine reach): any-thread pickup, wake. Generous timeouts: a loaded 2-core machine is slow to schedule.
const PICKUP_MS = 15_000;

before(() => {
  pythonPath();
});

function ask(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer on port ${port} within 10 s (got ${JSON.stringify(got)})`));
    }, 10_000);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(line + '\n'));
    s.on('data', (d: string) => (got += d));
    s.on('end', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe('thread auto: main blocked forever in join() while a worker serves', () => {
  let t: PyTarget;
  let mainTid = 0;
  let workerTid = 0;
  before(async () => {
    t = await startPython('join_busy.py');
    const [, m, w] = t.readyLine!.split(' ');
    mainTid = Number(m);
    workerTid = Number(w);
  });
  after(async () => {
    await t.kill();
  });

  it('lists each thread as a fact: native id, name and main flag (no state in the scan)', async () => {
    const [p] = await discover({ pids: [t.pid] });
    const byTid = new Map(p!.threads.map((x) => [x.tid, x]));
    assert.deepEqual(byTid.get(workerTid), { tid: workerTid, main: false, name: 'Worker-serve' });
    assert.equal(byTid.get(mainTid)?.main, true);
    assert.match(byTid.get(mainTid)?.name ?? '', /^python/);
    for (const th of p!.threads) assert.deepEqual(Object.keys(th).sort(), ['main', 'name', 'tid']);
  });

  it('succeeds on the worker by default (auto), inline on the claiming thread, and the report names it', async () => {
    const r = await runInTarget({
      pid: t.pid,
      code: 'import threading\nresult = [threading.get_native_id(), threading.current_thread().name]',
      inline: true,
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.deepEqual(r.result, [workerTid, 'Worker-serve']);
    assert.equal(r.pickedUpBy?.tid, workerTid);
    assert.equal(r.pickedUpBy?.name, 'Worker-serve');
    assert.equal(r.thread?.tid, workerTid);
    assert.deepEqual(await settledLeftovers(t.pid), []);
  });

  it('runs the code exactly once in a fresh thread, and withdraws the main thread so a next run is not refused', async () => {
    const r = await runInTarget({
      pid: t.pid,
      thread: 'auto',
      code: 'import builtins\nbuiltins._pyreach_auto_count = getattr(builtins, "_pyreach_auto_count", 0) + 1\nresult = builtins._pyreach_auto_count',
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(r.pickedUpBy?.tid, workerTid);
    assert.match(r.thread?.name ?? '', /^pyreach-run-/);
    // The main thread's request was withdrawn: it is not pending, so the next run is accepted (and runs once).
    const again = await runInTarget({
      pid: t.pid,
      code: 'import builtins\nresult = builtins._pyreach_auto_count',
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(again.status, 'succeeded', JSON.stringify(again));
    // Not by the first run's harness threads (its watchdog is still ending): only the target's own are armed.
    assert.doesNotMatch(again.pickedUpBy?.name ?? '', /^pyreach-/);
    assert.equal(typeof again.result, 'number');
    assert.equal(again.result, r.result);
  });

  it('with --thread main keeps the old behaviour: pickup_timeout naming the main thread’s futex wait', async () => {
    const r = await runInTarget({ pid: t.pid, thread: 'main', code: 'print(1)', pickupTimeoutMs: 1500 });
    assert.equal(r.status, 'pickup_timeout', JSON.stringify(r));
    assert.match(r.message ?? '', new RegExp(`thread ${mainTid}`));
    assert.match(r.message ?? '', /futex/);
    assert.match(r.message ?? '', /wake would not help/);
    assert.deepEqual(await settledLeftovers(t.pid), []);
  });

  it('the sys backend refuses thread auto, saying it can only aim at the main thread, and writes nothing', async () => {
    const r = await runInTarget({ pid: t.pid, backend: 'sys', thread: 'auto', code: 'print(1)' });
    assert.equal(r.status, 'refused');
    assert.equal(r.errorCode, 'THREAD_NOT_FOUND');
    assert.match(r.message ?? '', /only aim at the main thread/);
  });
});

describe('wake: an idle asyncio service whose only thread sits in epoll_wait', () => {
  let t: PyTarget;
  let port = 0;
  before(async () => {
    t = await startPython('idle_asyncio.py');
    port = Number(t.readyLine!.split(' ')[1]);
  });
  after(async () => {
    await t.kill();
  });

  it('without wake ends pickup_timeout naming epoll_wait and saying --wake would help', async () => {
    const r = await runInTarget({ pid: t.pid, code: 'print(1)', pickupTimeoutMs: 1500 });
    assert.equal(r.status, 'pickup_timeout', JSON.stringify(r));
    assert.match(r.message ?? '', /epoll_wait/);
    assert.match(r.message ?? '', /--wake would help/);
    assert.equal(r.woken, undefined);
  });

  it('with wake succeeds, reports the woken epoll_wait, and the loop still answers a request afterwards', async () => {
    const r = await runInTarget({
      pid: t.pid,
      wake: true,
      code: 'import threading\nresult = threading.current_thread().name',
      inline: true,
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(r.result, 'MainThread');
    assert.equal(r.woken?.length, 1, JSON.stringify(r.woken));
    assert.equal(r.woken[0]!.syscall, 'epoll_wait');
    assert.equal(r.woken[0]!.interrupted, true);
    assert.equal(await ask(port, 'hello'), 'PONG hello\n');
    assert.equal(t.isRunning(), true);
    assert.doesNotMatch(t.stderr(), /Traceback|Error/);
  });
});

describe('wake: other blocked targets', () => {
  it('wakes time.sleep(3600) on the main thread; the sleep goes on afterwards', async () => {
    const t = await startPython('sleep_main.py');
    try {
      const r = await runInTarget({
        pid: t.pid,
        wake: true,
        code: 'result = 42',
        pickupTimeoutMs: PICKUP_MS,
      });
      assert.equal(r.status, 'succeeded', JSON.stringify(r));
      assert.equal(r.result, 42);
      assert.equal(r.woken?.[0]?.syscall, 'clock_nanosleep');
      await sleep(300);
      assert.equal(t.isRunning(), true);
      assert.doesNotMatch(t.stdout(), /WOKE EARLY/);
    } finally {
      await t.kill();
    }
  });

  it('a lock-blocked target ends an honest pickup_timeout naming the futex, with or without wake', async () => {
    const t = await startPython('lock_blocked.py');
    try {
      for (const wake of [false, true]) {
        const r = await runInTarget({ pid: t.pid, wake, code: 'print(1)', pickupTimeoutMs: 1500 });
        assert.equal(r.status, 'pickup_timeout', JSON.stringify(r));
        assert.match(r.message ?? '', /futex/);
        assert.match(r.message ?? '', /wake would not help/);
        assert.equal(r.woken, undefined);
        if (wake) assert.match(r.message ?? '', /Wake found nothing to wake/);
      }
      assert.deepEqual(await settledLeftovers(t.pid), []);
    } finally {
      await t.kill();
    }
  });

  it('wakes a container-style target (own pid namespace and root) sleeping on its only thread', async () => {
    const t = await startPython('sleep_main.py', { style: 'container' });
    try {
      const r = await runInTarget({ pid: t.pid, wake: true, code: 'result = 7', pickupTimeoutMs: PICKUP_MS });
      assert.equal(r.status, 'succeeded', JSON.stringify(r));
      assert.equal(r.result, 7);
      assert.equal(r.woken?.[0]?.syscall, 'clock_nanosleep');
      assert.equal(r.pickedUpBy?.tid, 1);
      assert.deepEqual(await settledLeftovers(t.pid, t.rootOnHost), []);
    } finally {
      await t.kill();
    }
  });
});
