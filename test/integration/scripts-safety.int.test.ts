/**
 * What the library promises about its scripts, checked inside real CPython 3.14 targets: read-only scripts
 * leave nothing behind (not even a newly imported module), and a level change with a duration undoes itself
 * inside the target — no engine, agent or control plane involved after the injection returns.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runInTarget } from '@pyreach/remote-exec';
import { checkScriptParams, SCRIPTS } from '@pyreach/scripts';
import type { ExecResult } from '@pyreach/protocol/exec';
import { startPython, type PyTarget } from '../support/python';

async function run(target: PyTarget, code: string, params: Record<string, unknown> = {}): Promise<any> {
  const res: ExecResult = await runInTarget({ pid: target.pid, code, params, pickupTimeoutMs: 15_000 });
  assert.equal(
    res.status,
    'succeeded',
    `${res.errorCode ?? ''} ${res.message ?? ''} ${res.error?.traceback ?? ''}`,
  );
  return res;
}

async function runScript(target: PyTarget, id: string, params: unknown): Promise<any> {
  const check = checkScriptParams(id, params);
  assert.ok(check.ok, check.ok ? '' : check.message);
  return run(target, check.script.source, check.params);
}

/**
 * logging.set_level with a duration shorter than the schema allows (10 s): the schema is the gate of the control
 * plane and of a library-only agent; the source itself takes any duration, so a test hands it its parameters
 * directly to wait 1–2 s instead of 10 (test-only: no production path runs a source with unchecked parameters).
 */
async function setLevelQuick(target: PyTarget, params: Record<string, unknown>): Promise<any> {
  const { durationSeconds, ...rest } = params;
  const check = checkScriptParams('logging.set_level', { ...rest, durationSeconds: 600 });
  assert.ok(check.ok, check.ok ? '' : check.message);
  return run(target, check.script.source, { ...check.params, durationSeconds });
}

// Modules compiled into the interpreter (gc, _thread, ...) the target has whether or not it imported them:
// importing one runs no Python code and loads nothing.
const MODULES = 'import sys\nresult = sorted(m for m in sys.modules if m not in sys.builtin_module_names)';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('read-only library scripts', () => {
  let target: PyTarget;
  before(async () => {
    // busy.py imports nothing: any module a script drags in shows up.
    target = await startPython('busy.py', { readyTimeoutMs: 30_000 });
  });
  after(async () => {
    await target?.kill();
  });

  const readOnly = SCRIPTS.filter((s) => s.readOnly);

  it('are the scripts that change nothing and have nothing to undo', () => {
    assert.ok(readOnly.length >= 4);
    for (const s of SCRIPTS) {
      if (s.readOnly) assert.equal(s.undo, 'nothing', s.id);
      if (s.undo === 'nothing')
        assert.ok(s.readOnly, `${s.id} says there is nothing to undo but is not read-only`);
    }
    assert.equal(SCRIPTS.find((s) => s.id === 'interpreter.info')?.sensitive, true, 'argv may hold secrets');
  });

  for (const s of SCRIPTS.filter((x) => x.readOnly)) {
    it(`${s.id} imports no module the target had not loaded`, async () => {
      // The harness's own imports happen on the first injection; measure after one.
      await run(target, MODULES);
      const before = new Set<string>((await run(target, MODULES)).result);
      const params = s.id.startsWith('cache.') ? { path: 'sys.getrecursionlimit' } : {};
      const check = checkScriptParams(s.id, params);
      assert.ok(check.ok);
      await runInTarget({
        pid: target.pid,
        code: check.script.source,
        params: check.params,
        pickupTimeoutMs: 15_000,
      });
      const afterRun: string[] = (await run(target, MODULES)).result;
      const added = afterRun.filter((m) => !before.has(m));
      assert.deepEqual(added, [], `${s.id} loaded ${added.join(', ')}`);
    });
  }
});

describe('logging.set_level with a duration restores itself inside the target', () => {
  let target: PyTarget;
  before(async () => {
    // Logger "main" at ERROR; a DEBUG line and an ERROR line every 0.2 s.
    target = await startPython('log_service.py', { readyTimeoutMs: 30_000 });
  });
  after(async () => {
    await target?.kill();
  });

  const levelOf = async (logger: string): Promise<string> =>
    (
      await run(
        target,
        'import logging\nresult = logging.getLevelName(logging.getLogger(params["name"]).level)',
        { name: logger },
      )
    ).result;

  it('turns DEBUG on, then back to the previous level by itself when the time is up', async () => {
    const res = await setLevelQuick(target, {
      logger: 'main',
      level: 'DEBUG',
      durationSeconds: 2,
      restoreToken: 'req-expiry',
    });
    assert.match(
      res.output,
      /logger 'main': ERROR -> DEBUG; restores itself at \d{4}-\d\d-\d\dT[\d:]+Z \(in 2 s/,
    );
    assert.equal(res.result.previous, 'ERROR');
    assert.equal(res.result.restoreToken, 'req-expiry');
    await target.waitForStdout(/DEBUG main context/, 5_000, target.stdout().length);
    // Nothing of ours runs from here on: the engine call has returned, no agent exists in this test.
    await sleep(2_600);
    const mark = target.stdout().length;
    await sleep(800);
    assert.doesNotMatch(target.stdout().slice(mark), /DEBUG main context/, 'DEBUG lines stopped');
    assert.equal(await levelOf('main'), 'ERROR');
    const status = await runScript(target, 'logging.restore', { restoreToken: 'req-expiry' });
    assert.equal(status.result.state, 'restored');
    assert.equal(status.result.reason, 'expired');
    assert.deepEqual(
      status.result.outcome.find((o: any) => o.kind === 'logger'),
      { kind: 'logger', name: 'main', restored: 'ERROR', from: 'DEBUG' },
    );
  });

  it('restores NOTSET (inherit) exactly, not a pinned level', async () => {
    assert.equal(await levelOf('main.child'), 'NOTSET');
    await setLevelQuick(target, { logger: 'main.child', level: 'INFO', durationSeconds: 1 });
    assert.equal(await levelOf('main.child'), 'INFO');
    await sleep(1_500);
    assert.equal(await levelOf('main.child'), 'NOTSET');
  });

  it('leaves a level alone that someone changed after us, and says so', async () => {
    await setLevelQuick(target, {
      logger: 'main',
      level: 'DEBUG',
      durationSeconds: 1,
      restoreToken: 'req-changed',
    });
    await run(target, 'import logging\nlogging.getLogger("main").setLevel(logging.WARNING)');
    await sleep(1_500);
    assert.equal(await levelOf('main'), 'WARNING');
    const status = await runScript(target, 'logging.restore', { restoreToken: 'req-changed' });
    const logger = status.result.outcome.find((o: any) => o.kind === 'logger');
    assert.equal(logger.leftAt, 'WARNING');
    assert.match(logger.reason, /changed by someone else/);
    await run(target, 'import logging\nlogging.getLogger("main").setLevel(logging.ERROR)');
  });

  it('restores at once on "restore now", and a second change of the same logger restores to the original', async () => {
    await runScript(target, 'logging.set_level', {
      logger: 'main',
      level: 'DEBUG',
      durationSeconds: 60,
      restoreToken: 'req-first',
    });
    await runScript(target, 'logging.set_level', {
      logger: 'main',
      level: 'INFO',
      durationSeconds: 60,
      restoreToken: 'req-second',
    });
    const first = await runScript(target, 'logging.restore', { restoreToken: 'req-first' });
    assert.equal(first.result.state, 'superseded');
    assert.equal(first.result.supersededBy, 'req-second');
    const now = await runScript(target, 'logging.restore', { restoreToken: 'req-second', action: 'now' });
    assert.equal(now.result.state, 'restored');
    assert.equal(now.result.reason, 'restore-now');
    assert.equal(await levelOf('main'), 'ERROR', 'back to the level from before the first change');
    const unknown = await runScript(target, 'logging.restore', { restoreToken: 'never-made' });
    assert.equal(unknown.result.state, 'unknown');
  });

  it('restores a NOTSET logger and the handlers it lowered, and NOTSET can be set too', async () => {
    // A handler at WARNING on "main.h": DEBUG records would be dropped there, so set_level lowers it too.
    await run(
      target,
      'import logging, sys\nh = logging.StreamHandler(sys.stdout)\nh.setLevel(logging.WARNING)\nh.set_name("pyreach-test")\nlogging.getLogger("main.h").addHandler(h)',
    );
    const handlerLevel = async () =>
      (
        await run(
          target,
          'import logging\nresult = [logging.getLevelName(h.level) for h in logging.getLogger("main.h").handlers]',
        )
      ).result;
    assert.equal(await levelOf('main.h'), 'NOTSET');
    const res = await setLevelQuick(target, {
      logger: 'main.h',
      level: 'DEBUG',
      durationSeconds: 1,
      restoreToken: 'req-handlers',
    });
    assert.equal(res.result.previous, 'NOTSET');
    assert.equal(res.result.handlers.length, 1);
    assert.match(res.output, /handler <StreamHandler.*>: WARNING -> DEBUG/);
    assert.deepEqual(await handlerLevel(), ['DEBUG']);
    await sleep(1_500);
    assert.equal(await levelOf('main.h'), 'NOTSET');
    assert.deepEqual(await handlerLevel(), ['WARNING']);
    // The follow-up read the control plane runs at expiry: same source, mode check.
    const check = await runScript(target, 'logging.set_level', {
      logger: 'main.h',
      level: 'DEBUG',
      restoreToken: 'req-handlers',
      mode: 'check',
    });
    assert.equal(check.result.state, 'restored');
    assert.equal(check.result.current, 'NOTSET');
    assert.deepEqual(
      check.result.outcome.map((o: any) => [o.kind, o.from, o.restored]),
      [
        ['logger', 'DEBUG', 'NOTSET'],
        ['handler', 'DEBUG', 'WARNING'],
      ],
    );
    // NOTSET is offered: "set it back" to inherit, not a pinned level.
    await runScript(target, 'logging.set_level', {
      logger: 'main.child',
      level: 'NOTSET',
      durationSeconds: 0,
    });
    assert.equal(await levelOf('main.child'), 'NOTSET');
  });

  it('mode check changes nothing; mode restore restores at once, leaving a level changed meanwhile alone', async () => {
    await runScript(target, 'logging.set_level', {
      logger: 'main',
      level: 'DEBUG',
      durationSeconds: 60,
      restoreToken: 'req-modes',
    });
    const base = { logger: 'main', level: 'DEBUG', restoreToken: 'req-modes' };
    const pending = await runScript(target, 'logging.set_level', { ...base, mode: 'check' });
    assert.equal(pending.result.state, 'pending');
    assert.equal(await levelOf('main'), 'DEBUG', 'a check changes nothing');
    const now = await runScript(target, 'logging.set_level', { ...base, mode: 'restore' });
    assert.equal(now.result.state, 'restored');
    assert.equal(now.result.reason, 'restore-now');
    assert.equal(await levelOf('main'), 'ERROR');
    const again = await runScript(target, 'logging.set_level', { ...base, mode: 'restore' });
    assert.equal(again.result.reason, 'restore-now', 'a second restore changes nothing');
    const unknown = await runScript(target, 'logging.set_level', {
      ...base,
      restoreToken: 'none',
      mode: 'check',
    });
    assert.equal(unknown.result.state, 'unknown');

    // Restore now with a level someone else changed meanwhile: theirs stands, and the result says so.
    await runScript(target, 'logging.set_level', {
      ...base,
      durationSeconds: 60,
      restoreToken: 'req-modes2',
    });
    await run(target, 'import logging\nlogging.getLogger("main").setLevel(logging.CRITICAL)');
    const left = await runScript(target, 'logging.set_level', {
      ...base,
      restoreToken: 'req-modes2',
      mode: 'restore',
    });
    assert.equal(left.result.outcome[0].leftAt, 'CRITICAL');
    assert.equal(await levelOf('main'), 'CRITICAL');
    await run(target, 'import logging\nlogging.getLogger("main").setLevel(logging.ERROR)');
  });

  it('refuses a duration under 10 s or over 24 h in the schema (0 keeps the change)', () => {
    for (const d of [1, 9, 86_401, -1, 2.5])
      assert.equal(
        checkScriptParams('logging.set_level', { level: 'DEBUG', durationSeconds: d }).ok,
        false,
        `${d}`,
      );
    for (const d of [0, 10, 86_400])
      assert.equal(
        checkScriptParams('logging.set_level', { level: 'DEBUG', durationSeconds: d }).ok,
        true,
        `${d}`,
      );
  });

  it('keeps the change when the duration is 0', async () => {
    const res = await runScript(target, 'logging.set_level', {
      logger: 'main',
      level: 'INFO',
      durationSeconds: 0,
    });
    assert.equal(res.result.restoreToken, null);
    assert.equal(await levelOf('main'), 'INFO');
    await run(target, 'import logging\nlogging.getLogger("main").setLevel(logging.ERROR)');
  });
});
