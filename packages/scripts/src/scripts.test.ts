import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { ScriptSummary } from '@pyreach/protocol/api';
import { checkScriptParams, describeScript, SCRIPTS } from './index';

describe('script library', () => {
  it('has unique ids of the form area.verb', () => {
    const ids = SCRIPTS.map((s) => s.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) assert.match(id, /^[a-z]+\.[a-z_]+$/);
  });

  it('compiles every script with the target interpreter', () => {
    const python: string | undefined = process.env.PYREACH_PYTHON;
    assert.ok(python, 'PYREACH_PYTHON must point at a CPython 3.14 (scripts/provision-python.sh prints one)');
    for (const s of SCRIPTS) {
      const r: ReturnType<typeof spawnSync> = spawnSync(
        python as string,
        ['-c', 'import sys; compile(sys.stdin.read(), sys.argv[1], "exec")', s.id],
        {
          input: s.source,
          encoding: 'utf8',
        },
      );
      assert.equal(r.status, 0, `${s.id} does not compile: ${r.stderr}`);
    }
  });

  it('fills defaults and refuses bad parameters with a message naming the field', () => {
    const ok = checkScriptParams('logging.set_level', { level: 'DEBUG' });
    assert.ok(ok.ok);
    assert.deepEqual(ok.params, {
      logger: '',
      level: 'DEBUG',
      adjustHandlers: true,
      durationSeconds: 600,
      mode: 'set',
    });

    const bad = checkScriptParams('logging.set_level', { level: 'LOUD' });
    assert.equal(bad.ok, false);
    assert.equal(bad.ok ? '' : bad.code, 'INVALID_PARAMS');
    assert.match(bad.ok ? '' : bad.message, /level/);

    const short = checkScriptParams('logging.set_level', { level: 'DEBUG', durationSeconds: 5 });
    assert.match(short.ok ? '' : short.message, /at least 10 s[\s\S]*durationSeconds/);
    const long = checkScriptParams('logging.set_level', { level: 'DEBUG', durationSeconds: 86_401 });
    assert.equal(long.ok, false, 'at most 24 h');

    const injection = checkScriptParams('cache.lru_info', { path: 'os.system("id")' });
    assert.equal(injection.ok, false, 'a dotted path is validated, never evaluated');
  });

  it('refuses an unknown script and oversized parameters', () => {
    assert.equal(checkScriptParams('nope.nothing', {}).ok, false);
    const big = checkScriptParams('gc.stats', { top: 1, pad: 'x'.repeat(70 * 1024) });
    assert.equal(big.ok ? '' : big.code, 'PARAMS_TOO_LARGE');
  });

  it('declares for every script whether it is reversible, and the catalogue shape carries it', () => {
    for (const s of SCRIPTS) {
      const d = ScriptSummary.parse(describeScript(s));
      assert.equal(d.undo, s.undo, s.id);
      assert.equal(d.reversible, s.undo !== 'irreversible', s.id);
      assert.equal(d.sensitive, s.sensitive, s.id);
    }
    const set = ScriptSummary.parse(describeScript(SCRIPTS.find((s) => s.id === 'logging.set_level')!));
    assert.equal(set.undo, 'auto-restore');
    const props = (set.paramsSchema as { properties: Record<string, { enum?: string[]; maximum?: number }> })
      .properties;
    assert.ok(props.level!.enum!.includes('NOTSET'), 'NOTSET is offered');
    assert.equal(props.durationSeconds!.maximum, 86_400, 'the duration is a real, bounded field');
    assert.equal(
      SCRIPTS.find((s) => s.id === 'cache.lru_clear')?.undo,
      'irreversible',
      'a cleared cache stays cleared',
    );
  });

  it('describes each script with a JSON Schema for its form', () => {
    for (const s of SCRIPTS) {
      const d = describeScript(s);
      assert.equal((d.paramsSchema as { type?: string }).type, 'object', s.id);
    }
  });
});
