/**
 * Every built-in library script, run through the real engine into a real CPython 3.14 target, with its
 * parameters validated by the library's schema and travelling as data.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runInTarget } from '@pyreach/remote-exec';
import { checkScriptParams, SCRIPTS } from '@pyreach/scripts';
import type { ExecResult } from '@pyreach/protocol/exec';
import { startPython, type PyTarget } from '../support/python';

let target: PyTarget;

before(async () => {
  target = await startPython('library_target.py', { readyTimeoutMs: 30_000 });
});
after(async () => {
  await target?.kill();
});

async function runScript(id: string, params: unknown): Promise<ExecResult & { result?: any }> {
  const check = checkScriptParams(id, params);
  assert.ok(check.ok, check.ok ? '' : check.message);
  const res = await runInTarget({
    pid: target.pid,
    code: check.script.source,
    params: check.params,
    inline: check.script.inline ?? false,
    pickupTimeoutMs: 15_000,
    budgetMs: 30_000,
  });
  return res as ExecResult & { result?: any };
}

function assertSucceeded(res: ExecResult): void {
  assert.equal(
    res.status,
    'succeeded',
    `${res.errorCode ?? ''} ${res.message ?? ''} ${res.error?.traceback ?? ''}`,
  );
}

describe('script library against a real CPython 3.14 target', () => {
  it('covers every script in the library', () => {
    const tested = [
      'logging.set_level',
      'logging.restore',
      'threads.dump_stacks',
      'gc.stats',
      'cache.lru_info',
      'cache.lru_clear',
      'tracemalloc.top',
      'asyncio.tasks',
      'interpreter.info',
    ];
    assert.deepEqual(SCRIPTS.map((s) => s.id).sort(), [...tested].sort());
  });

  it('logging.set_level turns on DEBUG lines that were filtered before, and reports the previous level', async () => {
    const mark = target.stdout().length;
    await new Promise((r) => setTimeout(r, 400));
    assert.doesNotMatch(target.stdout().slice(mark), /DEBUG app\.worker tick/, 'no DEBUG before the change');
    const res = await runScript('logging.set_level', { logger: 'app', level: 'DEBUG' });
    assertSucceeded(res);
    assert.equal(res.result.previous, 'INFO');
    assert.equal(res.result.effective, 'DEBUG');
    assert.match(res.output, /'app': INFO -> DEBUG/);
    await target.waitForStdout(/DEBUG app\.worker tick \d+/, 10_000, target.stdout().length);
  });

  it('threads.dump_stacks lists every thread with its frames', async () => {
    const res = await runScript('threads.dump_stacks', {});
    assertSucceeded(res);
    const names = res.result.threads.map((t: { name: string }) => t.name);
    for (const n of ['MainThread', 'worker-1', 'asyncio-loop'])
      assert.ok(names.includes(n), `${n} in ${names}`);
    const worker = res.result.threads.find((t: { name: string }) => t.name === 'worker-1');
    assert.ok(worker.frames.some((f: { function: string }) => f.function === 'worker'));
    assert.match(res.output, /Thread worker-1/);
  });

  it('gc.stats counts tracked objects and lists the requested number of types', async () => {
    const res = await runScript('gc.stats', { top: 5 });
    assertSucceeded(res);
    assert.ok(res.result.tracked > 1000);
    assert.equal(res.result.top.length, 5);
    assert.equal(res.result.generations.length, 3);
  });

  it('cache.lru_info finds an lru_cache by dotted path and reports its statistics', async () => {
    const res = await runScript('cache.lru_info', { path: '__main__.square' });
    assertSucceeded(res);
    assert.equal(res.result.currsize, 5);
    assert.ok(res.result.hits >= 1);
    assert.equal(res.result.maxsize, 32);
  });

  it('cache.lru_info fails with a clear message for a path that is not a cache', async () => {
    const res = await runScript('cache.lru_info', { path: '__main__.log' });
    assert.equal(res.status, 'failed');
    assert.equal(res.errorCode, 'USER_EXCEPTION');
    assert.match(res.error?.message ?? '', /not a functools\.lru_cache/);
    const missing = await runScript('cache.lru_info', { path: 'nosuchmodule.fn' });
    assert.equal(missing.status, 'failed');
    assert.match(missing.error?.message ?? '', /no loaded module/);
  });

  it('cache.lru_clear empties the cache and reports before and after', async () => {
    const res = await runScript('cache.lru_clear', { path: '__main__.square' });
    assertSucceeded(res);
    assert.equal(res.result.before.currsize, 5);
    assert.equal(res.result.after.currsize, 0);
  });

  it('tracemalloc.top traces for a window, reports the top sites and switches tracing off again', async () => {
    const res = await runScript('tracemalloc.top', { seconds: 0.5, top: 3 });
    assertSucceeded(res);
    assert.equal(res.result.startedHere, true);
    assert.ok(res.result.top.length <= 3);
    const check = await runInTarget({
      pid: target.pid,
      code: 'import tracemalloc\nresult = tracemalloc.is_tracing()',
    });
    assert.equal(check.status, 'succeeded');
    assert.equal(check.result, false);
  });

  it('asyncio.tasks finds the running loop in another thread and its named task', async () => {
    const res = await runScript('asyncio.tasks', {});
    assertSucceeded(res);
    assert.ok(res.result.taskCount >= 1);
    const names = res.result.loops.flatMap((l: { tasks: { name: string }[] }) => l.tasks.map((t) => t.name));
    assert.ok(names.includes('ticker-task'), `ticker-task in ${names}`);
  });

  it('interpreter.info reports the version, pid and loaded modules', async () => {
    const res = await runScript('interpreter.info', {});
    assertSucceeded(res);
    assert.deepEqual(res.result.versionInfo.slice(0, 2), [3, 14]);
    assert.match(res.output, /^Python 3\.14\.\d+ \(cpython\)/, 'a dotted version, not [3, 14, 10]');
    assert.equal(res.result.pid, target.pid);
    assert.equal(res.result.remoteDebugEnabled, true);
    assert.ok(res.result.modules.includes('asyncio'));
  });
});
