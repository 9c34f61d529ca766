import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { ensureTestUser, pythonPath, startPython } from '../../../test/support/python';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../bin/pyreach-exec.mjs');

function cli(args: string[], opts: { uid?: number; gid?: number } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, ...opts });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  pythonPath();
});

describe('pyreach-exec run --thread / --wake (issue 12)', () => {
  it('wakes an idle target with --wake and says which thread was woken and which picked up', async () => {
    const t = await startPython('sleep_main.py');
    try {
      const r = cli(['run', '--pid', String(t.pid), '--wake', '--timeout', '15', '--code', 'print("hi")']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'hi\n');
      assert.match(r.stderr, /woke thread \d+ \(.*\) blocked in clock_nanosleep/);
      assert.match(r.stderr, new RegExp(`picked up by thread ${t.pid} `));
      const j = cli([
        'run',
        '--pid',
        String(t.pid),
        '--thread',
        'main',
        '--timeout',
        '1',
        '--code',
        '1',
        '--json',
      ]);
      assert.equal(j.code, 1);
      const res = JSON.parse(j.stdout) as { status: string; message: string };
      assert.equal(res.status, 'pickup_timeout');
      assert.match(res.message, /clock_nanosleep, which CPython retries after EINTR: --wake would help/);
    } finally {
      await t.kill();
    }
  });

  it('rejects a --thread that is neither auto nor main as a usage error', () => {
    const r = cli(['run', '--pid', '1', '--thread', 'worker', '--code', '1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--thread must be "auto" or "main"/);
  });
});

describe('pyreach-exec CLI', () => {
  it('lists a running target with its version, threads and main thread in JSON', async () => {
    const t = await startPython('blocked_main.py');
    try {
      const r = cli(['list', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const procs = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
      const p = procs.find((x) => x.pid === t.pid);
      assert.ok(p, 'target listed');
      for (const k of [
        'pid',
        'nsPid',
        'uid',
        'user',
        'exe',
        'cmdline',
        'pythonVersion',
        'freeThreaded',
        'remoteDebugEnabled',
        'inContainer',
        'threads',
      ])
        assert.ok(k in p, k);
      assert.match(String(p.pythonVersion), /^3\.14\./);
      assert.equal((p.threads as Array<{ main: boolean }>).filter((x) => x.main).length, 1);
      const table = cli(['list']);
      assert.equal(table.code, 0);
      assert.match(table.stdout, new RegExp(`^${t.pid}\\s`, 'm'));
    } finally {
      await t.kill();
    }
  });

  it('runs code with params and prints one JSON object, exiting 0 only on success', async () => {
    const t = await startPython('idle.py');
    const dir = mkdtempSync(join(tmpdir(), 'pyreach-cli-'));
    try {
      const ok = cli([
        'run',
        '--pid',
        String(t.pid),
        '--code',
        'print("hi", params["x"])\nresult = params',
        '--params-json',
        '{"x":"ü"}',
        '--json',
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      const r = JSON.parse(ok.stdout);
      assert.equal(r.status, 'succeeded');
      assert.equal(r.output, 'hi ü\n');
      assert.deepEqual(r.result, { x: 'ü' });
      assert.ok(r.pickedUpAt && r.finishedAt && r.thread);

      const file = join(dir, 'boom.py');
      writeFileSync(file, 'raise RuntimeError("boom")\n');
      const bad = cli(['run', '--pid', String(t.pid), '--file', file, '--backend', 'sys', '--json']);
      assert.equal(bad.code, 1);
      const b = JSON.parse(bad.stdout);
      assert.equal(b.status, 'failed');
      assert.equal(b.errorCode, 'USER_EXCEPTION');
      assert.equal(b.error.type, 'RuntimeError');
      assert.match(b.error.traceback, /boom/);

      const plain = cli(['run', '--pid', String(t.pid), '--code', 'print("streamed")']);
      assert.equal(plain.code, 0);
      assert.equal(plain.stdout, 'streamed\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await t.kill();
    }
  });

  it('prints help for each command and rejects bad flags with exit status 2', () => {
    for (const args of [['--help'], ['list', '--help'], ['run', '--help']]) {
      const r = cli(args);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /Usage: pyreach-exec/);
    }
    const cases: [string[], RegExp][] = [
      [['run', '--code', 'x'], /--pid is required/],
      [['run', '--pid', '1'], /exactly one of --code or --file/],
      [['run', '--pid', '1', '--code', 'x', '--backend', 'gdb'], /--backend must be/],
      [['run', '--pid', '1', '--code', 'x', '--timeout', '0'], /--timeout must be a positive number/],
      [['run', '--pid', '1', '--code', 'x', '--params-json', '[1]'], /must be a JSON object/],
      [['run', '--pid', '1', '--code', 'x', '--bogus'], /bogus/],
      [['frobnicate'], /unknown command/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, re);
    }
  });

  it('exits 1 with NOT_PYTHON for a process that is not Python', () => {
    const r = cli(['run', '--pid', String(process.pid), '--code', 'print(1)', '--json']);
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.stdout).errorCode, 'NOT_PYTHON');
  });

  it('says to grant CAP_SYS_PTRACE when an unprivileged engine cannot reach a root target', async () => {
    const user = ensureTestUser();
    const t = await startPython('idle.py');
    try {
      const r = cli(['run', '--pid', String(t.pid), '--code', 'print(1)', '--json'], {
        uid: user.uid,
        gid: user.gid,
      });
      assert.equal(r.code, 1, r.stderr);
      const res = JSON.parse(r.stdout);
      assert.equal(res.status, 'refused');
      assert.equal(res.errorCode, 'PERMISSION_DENIED');
      assert.match(res.message, /CAP_SYS_PTRACE/);
      assert.match(res.message, /Yama|ptrace_scope/);
    } finally {
      await t.kill();
    }
  });
});
