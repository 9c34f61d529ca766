import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
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
    assert.deepEqual(ok.params, { logger: '', level: 'DEBUG', adjustHandlers: true, durationSeconds: 600 });

    const bad = checkScriptParams('logging.set_level', { level: 'LOUD' });
    assert.equal(bad.ok, false);
    assert.equal(bad.ok ? '' : bad.code, 'INVALID_PARAMS');
    assert.match(bad.ok ? '' : bad.message, /level/);

    const injection = checkScriptParams('cache.lru_info', { path: 'os.system("id")' });
    assert.equal(injection.ok, false, 'a dotted path is validated, never evaluated');
  });

  it('refuses an unknown script and oversized parameters', () => {
    assert.equal(checkScriptParams('nope.nothing', {}).ok, false);
    const big = checkScriptParams('gc.stats', { top: 1, pad: 'x'.repeat(70 * 1024) });
    assert.equal(big.ok ? '' : big.code, 'PARAMS_TOO_LARGE');
  });

  it('describes each script with a JSON Schema for its form', () => {
    for (const s of SCRIPTS) {
      const d = describeScript(s);
      assert.equal((d.paramsSchema as { type?: string }).type, 'object', s.id);
    }
  });
});
