/**
 * Host-side hardening of the engine (issue 10): the sys backend never runs a user's interpreter as root, one
 * run per target process across processes, output and results as safe text, cancel that stops, discovery
 * that neither follows links nor blocks inside a container's root.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { ExecResult } from '@pyreach/protocol/exec';
import { decodeToBytes, encodeString, isSafeText } from '@pyreach/protocol/text';
import { discover, runInTarget } from '../src/index';
import { locateRuntime, openMem, readMainInterpreter } from '../src/runtime';
import { threadSlot, withdrawRequest, writeRequest } from '../src/native';
import {
  fixturePath,
  privateContainerRoot,
  pythonPath,
  startPython,
  userOwnedPython,
  withPythonRoot,
  type PyTarget,
} from '../../../test/support/python';
import { HOSTILE_USER, userDir } from '../../../test/hostile/kit';
import { settledLeftovers, sleep } from './helpers';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../bin/pyreach-exec.mjs');
const PICKUP_MS = 15_000;

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

before(() => {
  pythonPath();
});

describe('the sys backend and interpreters a non-root user controls', () => {
  let py: ReturnType<typeof userOwnedPython>;
  let rec: ReturnType<typeof userDir>;
  let child: ChildProcess | null = null;
  before(() => {
    py = userOwnedPython(HOSTILE_USER);
    rec = userDir(HOSTILE_USER);
  });
  after(() => {
    child?.kill('SIGKILL');
    py?.cleanup();
    rec?.cleanup();
  });

  it('refuses UNTRUSTED_INTERPRETER naming the file for a user-owned CPython with a planted .pth, which never runs as root', async () => {
    const record = join(rec.path, 'pth-uids');
    // The user's planted code: runs at every start of that interpreter that imports site, records its uid.
    writeFileSync(
      join(py.sitePackages, 'zz_planted.pth'),
      `import os; open(${JSON.stringify(record)}, 'a').write('%d\\n' % os.getuid())\n`,
    );
    const script = join(rec.path, 'idle.py');
    writeFileSync(script, readFileSync(fixturePath('idle.py')));
    child = spawn(py.python, [script], {
      uid: HOSTILE_USER.uid,
      gid: HOSTILE_USER.gid,
      cwd: rec.path,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { PATH: '/usr/bin:/bin', PYTHONUNBUFFERED: '1' },
    });
    await new Promise<void>((res, rej) => {
      child!.stdout!.on('data', (d: Buffer) => d.toString().includes('READY') && res());
      child!.on('exit', (c) => rej(new Error(`target exited ${c}`)));
    });
    // The plant is live: the target's own start-up ran it as the user.
    assert.deepEqual(readFileSync(record, 'utf8').trim().split('\n'), [String(HOSTILE_USER.uid)]);

    for (const via of ['api', 'cli'] as const) {
      let r: ExecResult;
      if (via === 'api')
        r = await runInTarget({
          pid: child.pid!,
          backend: 'sys',
          code: 'print(1)',
          pickupTimeoutMs: PICKUP_MS,
        });
      else {
        const out = await cli([
          'run',
          '--pid',
          String(child.pid),
          '--backend',
          'sys',
          '--code',
          'print(1)',
          '--json',
        ]);
        assert.equal(out.code, 1, out.stderr);
        r = JSON.parse(out.stdout) as ExecResult;
      }
      assert.equal(r.status, 'refused', JSON.stringify(r));
      assert.equal(r.errorCode, 'UNTRUSTED_INTERPRETER');
      assert.ok((r.message ?? '').includes(py.root), `names the file: ${r.message}`);
      assert.match(r.message ?? '', /owned by uid 65534/);
      assert.match(r.message ?? '', /native backend/);
    }
    assert.deepEqual(
      readFileSync(record, 'utf8').trim().split('\n'),
      [String(HOSTILE_USER.uid)],
      'never ran as root',
    );
    assert.deepEqual(await settledLeftovers(child.pid!), []);

    // The native backend needs none of it and runs the code.
    const ok = await runInTarget({
      pid: child.pid!,
      code: 'import os\nresult = os.getuid()',
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(ok.status, 'succeeded', JSON.stringify(ok));
    assert.equal(ok.result, HOSTILE_USER.uid);
  });

  it('runs the sys backend with -I -S from a root-owned interpreter, so site (and every .pth) stays out', async () => {
    const t = await startPython('idle.py');
    try {
      const r = await runInTarget({
        pid: t.pid,
        backend: 'sys',
        code: 'result = 1',
        pickupTimeoutMs: PICKUP_MS,
      });
      assert.equal(r.status, 'succeeded', JSON.stringify(r));
    } finally {
      await t.kill();
    }
  });
});

describe('one run per target process at a time, across processes', () => {
  let t: PyTarget;
  before(async () => {
    t = await startPython('busy.py');
  });
  after(async () => {
    await t?.kill();
  });

  for (const wait of [0, 60]) {
    it(`six concurrent pyreach-exec runs into one busy target each end succeeded with their own output or refused/PENDING_CONFLICT (lock wait ${wait} s)`, async () => {
      const runs = await Promise.all(
        [...Array(6).keys()].map((i) =>
          cli([
            'run',
            '--pid',
            String(t.pid),
            '--code',
            `import time\nprint("run ${i}")\ntime.sleep(0.3)\nresult = ${i}`,
            '--lock-wait',
            String(wait),
            '--json',
          ]),
        ),
      );
      let ok = 0;
      runs.forEach((out, i) => {
        const r = JSON.parse(out.stdout) as ExecResult;
        if (r.status === 'succeeded') {
          ok++;
          assert.equal(r.output, `run ${i}\n`);
          assert.equal(r.result, i);
        } else {
          assert.equal(r.status, 'refused', JSON.stringify(r));
          assert.equal(r.errorCode, 'PENDING_CONFLICT', JSON.stringify(r));
          assert.match(r.message ?? '', /another Pyreach run/);
        }
      });
      assert.ok(ok >= 1, 'at least one ran');
      if (wait > 0) assert.equal(ok, 6, 'with a long enough wait, all of them ran, one after the other');
      assert.deepEqual(await settledLeftovers(t.pid), []);
    });
  }

  it('refuses a lock directory another user could write, before anything is written', async () => {
    const dir = userDir(HOSTILE_USER);
    try {
      let staged = false;
      const r = await runInTarget({
        pid: t.pid,
        code: 'print(1)',
        lockDir: join(dir.path, 'locks'),
        onState: () => (staged = true),
      });
      assert.equal(r.status, 'refused', JSON.stringify(r));
      assert.match(r.message ?? '', /lock directory .* is not safe.*uid 65534/);
      assert.equal(staged, false);
    } finally {
      dir.cleanup();
    }
  });
});

describe('staging bases with a link on the way', () => {
  it('skips a base that is (or passes through) a symbolic link and never creates anything where it points', async () => {
    const t = await startPython('idle.py', { user: HOSTILE_USER });
    const dir = userDir(HOSTILE_USER);
    const { mkdirSync, readdirSync: ls } = await import('node:fs');
    try {
      const pointee = join(dir.path, 'pointee');
      mkdirSync(pointee, { mode: 0o777 });
      const link = join(dir.path, 'link');
      symlinkSync(pointee, link);
      const r = await runInTarget({
        pid: t.pid,
        code: 'result = 1',
        stagingDirs: [link, join(link, 'sub'), '/tmp'],
        pickupTimeoutMs: PICKUP_MS,
      });
      assert.equal(r.status, 'succeeded', JSON.stringify(r));
      assert.deepEqual(ls(pointee), []);
      const only = await runInTarget({ pid: t.pid, code: 'result = 1', stagingDirs: [link] });
      assert.equal(only.status, 'refused', JSON.stringify(only));
      assert.equal(only.errorCode, 'STAGING_FAILED');
      assert.match(only.message ?? '', /symbolic link/);
      assert.deepEqual(ls(pointee), []);
    } finally {
      await t.kill();
      dir.cleanup();
    }
  });
});

describe('an engine that is not root', () => {
  it('runs into a process of its own user with a lock directory of its own, and refuses one it does not own', async () => {
    const t = await startPython('idle.py', { user: HOSTILE_USER });
    const mine = userDir(HOSTILE_USER);
    try {
      const run = (lockDir: string) =>
        new Promise<ExecResult>((resolve, reject) => {
          const child = spawn(
            process.execPath,
            [
              BIN,
              'run',
              '--pid',
              String(t.pid),
              '--code',
              'import os\nresult = os.getuid()',
              '--json',
              '--lock-dir',
              lockDir,
            ],
            { uid: HOSTILE_USER.uid, gid: HOSTILE_USER.gid, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' },
          );
          let out = '';
          let err = '';
          child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
          child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
          child.on('exit', () => {
            try {
              resolve(JSON.parse(out) as ExecResult);
            } catch {
              reject(new Error(`no JSON: ${out} ${err}`));
            }
          });
        });
      const ok = await run(join(mine.path, 'locks'));
      assert.equal(ok.status, 'succeeded', JSON.stringify(ok));
      assert.equal(ok.result, HOSTILE_USER.uid);
      const bad = await run('/run/pyreach/locks');
      assert.equal(bad.status, 'refused', JSON.stringify(bad));
      assert.match(bad.message ?? '', /lock directory/);
    } finally {
      await t.kill();
      mine.cleanup();
    }
  });
});

describe('a request slot taken over by another tracer', () => {
  it('ends PENDING_CONFLICT (not HARNESS_ERROR) when another tracer replaces our pending request', async () => {
    const t = await startPython('blocked_main.py');
    try {
      const run = runInTarget({ pid: t.pid, thread: 'main', code: 'print(1)', pickupTimeoutMs: 5000 });
      await sleep(300);
      const mem = openMem('/proc', t.pid, true);
      const loc = locateRuntime('/proc', t.pid, mem);
      const slot = threadSlot(loc, readMainInterpreter(mem, loc, t.pid).mainTstate!);
      const foreign = Buffer.from('/nonexistent/pdb-remote-script.py');
      writeRequest(mem, slot, foreign);
      try {
        const started = Date.now();
        const r = await run;
        assert.equal(r.status, 'failed', JSON.stringify(r));
        assert.equal(r.errorCode, 'PENDING_CONFLICT');
        assert.match(r.message ?? '', /another tracer/);
        assert.ok(Date.now() - started < 2000, 'noticed at once, not at the pickup timeout');
      } finally {
        withdrawRequest(mem, slot, foreign);
        mem.close();
      }
      assert.deepEqual(await settledLeftovers(t.pid), []);
    } finally {
      await t.kill();
    }
  });
});

describe('output and results as safe text', () => {
  let t: PyTarget;
  before(async () => {
    t = await startPython('idle.py', { user: HOSTILE_USER });
  });
  after(async () => {
    await t?.kill();
  });
  const code = [
    'print("nul\\x00byte", "esc\\x1b[31mred\\x1b[0m", "cr\\rover", "lone\\udc80", "high\\ud800", "é✓")',
    'result = {"s": "\\ud800x", "k\\x00": "\\x1b]0;title\\x07", "n": [1, "\\udfff"]}',
  ].join('\n');
  const expectedOut = Buffer.concat([
    Buffer.from('nul\x00byte esc\x1b[31mred\x1b[0m cr\rover lone'),
    Buffer.from([0xed, 0xb2, 0x80]),
    Buffer.from(' high'),
    Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from(' é✓\n'),
  ]);

  it('returns NUL, control characters, ANSI escapes and lone surrogates losslessly as safe text (API)', async () => {
    const chunks: string[] = [];
    const r = await runInTarget({
      pid: t.pid,
      code,
      pickupTimeoutMs: PICKUP_MS,
      onOutput: (c) => chunks.push(c),
    });
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.ok(isSafeText(r.output));
    assert.deepEqual(Buffer.from(decodeToBytes(r.output)), expectedOut);
    assert.equal(chunks.join(''), r.output);
    assert.deepEqual(r.result, {
      s: encodeString('\ud800x'),
      [encodeString('k\x00')]: encodeString('\x1b]0;title\x07'),
      n: [1, encodeString('\udfff')],
    });
    assert.ok(isSafeText(JSON.stringify(r)));
  });

  it('reports a result holding a lone surrogate as succeeded, never as "may still be running"', async () => {
    const r = await runInTarget({
      pid: t.pid,
      code: 'result = "\\udc80"',
      pickupTimeoutMs: PICKUP_MS,
      budgetMs: 2000,
    });
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(r.result, encodeString('\udc80'));
  });

  it('keeps an exception message with NUL and escapes as safe text', async () => {
    const r = await runInTarget({
      pid: t.pid,
      code: 'raise ValueError("bad\\x00\\x1b[2J\\udc80")',
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.errorCode, 'USER_EXCEPTION');
    assert.equal(r.error?.message, encodeString('bad\x00\x1b[2J\udc80'));
    assert.ok(isSafeText(r.error?.traceback ?? ''));
  });

  it('through the CLI: --json carries safe text, and the terminal output shows \\xNN instead of raw control bytes', async () => {
    const j = await cli(['run', '--pid', String(t.pid), '--code', code, '--json']);
    assert.equal(j.code, 0, j.stderr);
    const r = JSON.parse(j.stdout) as ExecResult;
    assert.deepEqual(Buffer.from(decodeToBytes(r.output)), expectedOut);
    const plain = await cli(['run', '--pid', String(t.pid), '--code', code]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stdout, /[\x00\x1b\r\x07]/);
    assert.match(plain.stdout, /nul\\x00byte esc\\x1b\[31mred/);
    assert.match(plain.stdout, /^result: /m);
  });

  it('keeps the output cap in bytes', async () => {
    const r = await runInTarget({
      pid: t.pid,
      code: 'for i in range(100):\n    print("\\x00" * 99)',
      outputCapBytes: 1000,
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.status, 'succeeded');
    assert.equal(r.outputTruncated, true);
    const bytes = decodeToBytes(r.output);
    assert.ok(bytes.length <= 1000 + 64, `${bytes.length} bytes`);
    assert.match(r.output, /\[pyreach: output truncated at 1000 bytes\]\n$/);
  });
});

describe('cancel', () => {
  let t: PyTarget;
  let dir: ReturnType<typeof userDir>;
  before(async () => {
    t = await startPython('idle.py', { user: HOSTILE_USER });
    dir = userDir(HOSTILE_USER);
  });
  after(async () => {
    await t?.kill();
    dir?.cleanup();
  });

  for (const inline of [false, true]) {
    it(`stops running code within a second and ends cancelled with the output so far${inline ? ' (inline)' : ''}`, async () => {
      const beat = join(dir.path, `heartbeat-${inline}`);
      const ac = new AbortController();
      let cancelledAt = 0;
      const r = await runInTarget({
        pid: t.pid,
        code: `import time\nprint("started")\nwhile True:\n    open(${JSON.stringify(beat)}, "a").write("x")\n    time.sleep(0.02)`,
        inline,
        pickupTimeoutMs: PICKUP_MS,
        signal: ac.signal,
        onState: (s) =>
          s === 'picked_up' &&
          setTimeout(() => {
            cancelledAt = Date.now();
            ac.abort();
          }, 500),
      });
      const endedAt = Date.now();
      assert.equal(r.status, 'cancelled', JSON.stringify(r));
      assert.equal(r.errorCode, 'CANCELLED');
      assert.equal(r.output, 'started\n');
      assert.equal(r.leftoverThread, undefined);
      assert.ok(endedAt - cancelledAt < 1000, `stopped ${endedAt - cancelledAt} ms after the cancel`);
      const size = statSync(beat).size;
      assert.ok(size > 3, 'the code did run');
      await sleep(1000);
      assert.equal(statSync(beat).size, size, 'the heartbeat stopped growing');
      assert.deepEqual(await settledLeftovers(t.pid), []);
    });
  }

  it('withdraws a request cancelled before pickup and ends cancelled with nothing run', async () => {
    const b = await startPython('blocked_main.py');
    try {
      const ac = new AbortController();
      const r = await runInTarget({
        pid: b.pid,
        thread: 'main',
        code: 'print(1)',
        pickupTimeoutMs: PICKUP_MS,
        signal: ac.signal,
        onState: (s) => s === 'staged' && setTimeout(() => ac.abort(), 200),
      });
      assert.equal(r.status, 'cancelled', JSON.stringify(r));
      assert.equal(r.errorCode, 'CANCELLED');
      assert.match(r.message ?? '', /before the target picked the request up.*withdrawn.*nothing ran/);
      assert.deepEqual(await settledLeftovers(b.pid), []);
    } finally {
      await b.kill();
    }
  });

  it('says one consistent thing and names the leftover thread when cancelled code is blocked in C', async () => {
    const ac = new AbortController();
    const r = await runInTarget({
      pid: t.pid,
      code: 'import time\nprint("sleeping")\ntime.sleep(20)',
      pickupTimeoutMs: PICKUP_MS,
      cancelGraceMs: 500,
      signal: ac.signal,
      onState: (s) => s === 'picked_up' && setTimeout(() => ac.abort(), 200),
    });
    assert.equal(r.status, 'cancelled', JSON.stringify(r));
    assert.equal(r.errorCode, 'CANCELLED');
    assert.match(r.message ?? '', /could not be interrupted/);
    assert.match(r.message ?? '', /may still be running in thread pyreach-run-[0-9a-f]+ \(tid \d+\)/);
    assert.doesNotMatch(r.message ?? '', /was stopped/);
    assert.match(r.leftoverThread?.name ?? '', /^pyreach-run-/);
    assert.ok((r.leftoverThread?.tid ?? 0) > 0);
    assert.equal(r.output, 'sleeping\n');
  });

  it('reports code blocked in C past its budget as not interrupted, with the leftover thread', async () => {
    const r = await runInTarget({
      pid: t.pid,
      code: 'import time\ntime.sleep(20)',
      budgetMs: 300,
      pickupTimeoutMs: PICKUP_MS,
    });
    assert.equal(r.status, 'failed', JSON.stringify(r));
    assert.equal(r.errorCode, 'TIME_BUDGET_EXCEEDED');
    assert.match(r.message ?? '', /could not be interrupted.*may still be running in thread pyreach-run-/);
    assert.match(r.leftoverThread?.name ?? '', /^pyreach-run-/);
  });

  it('through the CLI: SIGTERM cancels the run and it ends cancelled', async () => {
    const beat = join(dir.path, 'heartbeat-cli');
    const child = spawn(
      process.execPath,
      [
        BIN,
        'run',
        '--pid',
        String(t.pid),
        '--json',
        '--code',
        `import time\nwhile True:\n    open(${JSON.stringify(beat)}, "a").write("x")\n    time.sleep(0.02)`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const until = Date.now() + 20_000;
    while (!existsSync(beat) && Date.now() < until) await sleep(50);
    // bin/pyreach-exec.mjs runs the CLI in a child: signal the whole group as a terminal would.
    const cliPid = Number(
      readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0],
    );
    process.kill(cliPid, 'SIGTERM');
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    const r = JSON.parse(out) as ExecResult;
    assert.equal(code, 1);
    assert.equal(r.status, 'cancelled', out);
    const size = statSync(beat).size;
    await sleep(800);
    assert.equal(statSync(beat).size, size);
  });
});

describe('discovery inside a container root the target user controls', () => {
  it('neither blocks on a FIFO planted at the container’s /etc/passwd nor follows a link there', async () => {
    const copy = privateContainerRoot();
    try {
      const passwd = join(copy.root, 'etc/passwd');
      const t = await withPythonRoot(copy.root, () => startPython('idle.py', { style: 'container' }));
      try {
        // Planted once the target runs (its own start-up reads /etc/passwd).
        if (existsSync(passwd)) unlinkSync(passwd);
        execFileSync('mkfifo', [passwd]);
        const started = Date.now();
        const [p] = await discover({ pids: [t.pid] });
        assert.ok(Date.now() - started < 5000, 'discovery did not wait on the FIFO');
        assert.equal(p?.inContainer, true);
        assert.equal(p?.user, 'root', 'falls back to the host name for uid 0');
        // An absolute link to a path that exists only on the host: resolved through /proc/PID/root it would
        // be read from the host. Never followed.
        unlinkSync(passwd);
        const hostOnly = join(copy.root, 'etc/host-only-passwd');
        writeFileSync(hostOnly, 'ghost:x:0:0::/:/bin/sh\n');
        symlinkSync(hostOnly, passwd);
        const [q] = await discover({ pids: [t.pid] });
        assert.equal(q?.user, 'root', 'the link was not followed');
      } finally {
        await t.kill();
      }
    } finally {
      copy.cleanup();
    }
  });
});
