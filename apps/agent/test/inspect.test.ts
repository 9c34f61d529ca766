import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ChildInspector,
  inspectResult,
  MAX_CHILD_OUTPUT_BYTES,
  selfCommand,
  type InspectRequest,
} from '../src/inspect';

const CLI = join(fileURLToPath(new URL('.', import.meta.url)), '../src/cli.ts');

const request = (over: Partial<InspectRequest> = {}): InspectRequest => ({
  pid: 4242,
  startTime: '1000',
  what: 'stacks',
  allowOptedOut: false,
  readTimeoutMs: 1000,
  maxFrames: 64,
  maxReadBytes: 1024 * 1024,
  maxReportBytes: 1024 * 1024,
  ...over,
});

/** A child that runs `js` (its request JSON is its last argument). */
function child(js: string, onSpawn?: (pid: number) => void): ChildInspector {
  return new ChildInspector({ command: process.execPath, args: ['-e', js] }, onSpawn);
}

/** Alive and not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function gone(pid: number, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (running(pid)) {
    if (Date.now() > end) throw new Error(`process ${pid} still runs`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const never = new AbortController().signal;

describe('the reading child', () => {
  test('a child that never answers is killed at the deadline, and the outcome says timeout', async () => {
    let pid = 0;
    const t0 = Date.now();
    const o = await child('setInterval(() => {}, 1000)', (p) => (pid = p)).inspect(request(), {
      deadlineMs: 700,
      signal: never,
    });
    assert.equal(o.kind, 'timeout');
    assert.ok(Date.now() - t0 >= 650 && Date.now() - t0 < 5000, String(Date.now() - t0));
    assert.ok(pid > 0);
    await gone(pid);
  });

  test('the kernel kills a reading child before the agent when memory runs short', async () => {
    let adj = '';
    await child('setInterval(() => {}, 1000)', (p) => {
      adj = readFileSync(`/proc/${p}/oom_score_adj`, 'utf8').trim();
    }).inspect(request(), { deadlineMs: 300, signal: never });
    assert.equal(adj, '1000');
  });

  test('a child stopped in its tracks (as a read blocked in the kernel would be) is still killed', async () => {
    let pid = 0;
    const o = await child("process.kill(process.pid, 'SIGSTOP')", (p) => (pid = p)).inspect(request(), {
      deadlineMs: 800,
      signal: never,
    });
    assert.equal(o.kind, 'timeout');
    await gone(pid);
  });

  test('a cancel kills the child at once', async () => {
    let pid = 0;
    const abort = new AbortController();
    const p = child('setInterval(() => {}, 1000)', (x) => {
      pid = x;
      setTimeout(() => abort.abort(), 100);
    }).inspect(request(), { deadlineMs: 30_000, signal: abort.signal });
    assert.equal((await p).kind, 'cancelled');
    await gone(pid);
  });

  test('garbage, a report for another pid, a report that breaks its schema and a crash are invalid, never a report', async () => {
    const cases: [string, RegExp][] = [
      ['process.stdout.write("hello\\n")', /no JSON answer/],
      [
        'process.stdout.write(JSON.stringify({ kind: "report", report: { pid: 1 }, note: null }) + "\\n")',
        /for pid 1, not 4242/,
      ],
      [
        'process.stdout.write(JSON.stringify({ kind: "report", report: { pid: 4242, threads: [{ tid: "x" }] }, note: null }) + "\\n")',
        /stacks report does not parse/,
      ],
      ['process.stdout.write(JSON.stringify({ kind: "surprise" }) + "\\n")', /malformed/],
      [
        'process.stderr.write("the reader crashed\\n"); process.exit(3)',
        /exit code 3 before answering: the reader crashed/,
      ],
    ];
    for (const [js, why] of cases) {
      const o = await child(js).inspect(request(), { deadlineMs: 10_000, signal: never });
      assert.equal(o.kind, 'invalid', js);
      assert.match(o.kind === 'invalid' ? o.message : '', why);
    }
  });

  test('a child that writes more than a report can be is killed and its answer refused', async () => {
    let pid = 0;
    const o = await child(
      'const b = Buffer.alloc(1 << 20, 97); const w = () => process.stdout.write(b, w); w()',
      (p) => (pid = p),
    ).inspect(request(), { deadlineMs: 30_000, signal: never });
    assert.equal(o.kind, 'invalid');
    assert.match(
      o.kind === 'invalid' ? o.message : '',
      new RegExp(`more than ${MAX_CHILD_OUTPUT_BYTES} bytes`),
    );
    await gone(pid);
  });

  test('no environment variable of the agent reaches the child', async () => {
    process.env.PYREACH_SECRET_FOR_TEST = 'x';
    try {
      const o = await child(
        'process.stdout.write(JSON.stringify({ kind: "gone", message: Object.keys(process.env).sort().join(",") }) + "\\n")',
      ).inspect(request(), { deadlineMs: 10_000, signal: never });
      assert.deepEqual(o, { kind: 'gone', message: 'LANG,PATH' });
    } finally {
      delete process.env.PYREACH_SECRET_FOR_TEST;
    }
  });

  test("the agent's own program is the child: the hidden sub-command answers for a pid that does not exist", async () => {
    const cmd = selfCommand(process.execPath, ['--import', 'tsx'], CLI);
    const o = await new ChildInspector(cmd).inspect(request({ pid: 2 ** 22 + 7 }), {
      deadlineMs: 60_000,
      signal: never,
    });
    assert.deepEqual(o, { kind: 'gone', message: `process ${2 ** 22 + 7} has exited` });
    assert.ok(existsSync(CLI));
  });

  test('the hidden sub-command refuses a malformed request', async () => {
    const cmd = selfCommand(process.execPath, ['--import', 'tsx'], CLI);
    const bad = new ChildInspector({ command: cmd.command, args: cmd.args });
    const o = await bad.inspect({ ...request(), pid: -1 } as InspectRequest, {
      deadlineMs: 60_000,
      signal: never,
    });
    assert.equal(o.kind, 'invalid');
    assert.match(o.kind === 'invalid' ? o.message : '', /exit code 2.*bad request/s);
  });

  test('the child is started like this process, without its debugger flags, with a capped heap', () => {
    assert.deepEqual(
      selfCommand(
        '/usr/bin/node',
        ['--import', 'tsx', '--inspect=9229', '--max-old-space-size=4096'],
        '/a/cli.ts',
      ),
      {
        command: '/usr/bin/node',
        args: ['--import', 'tsx', '--max-old-space-size=256', '/a/cli.ts', '__inspect-child'],
      },
    );
    assert.deepEqual(selfCommand('/usr/bin/node', [], '/opt/pyreach-agent.mjs').args, [
      '--max-old-space-size=256',
      '/opt/pyreach-agent.mjs',
      '__inspect-child',
    ]);
  });
});

test('a timeout result names the deadline setting and says nothing ran', () => {
  const r = inspectResult('stacks', { kind: 'timeout', afterMs: 20_003 }, 20);
  assert.equal(r.status, 'failed');
  assert.equal(r.errorCode, 'INSPECT_TIMEOUT');
  assert.match(r.message ?? '', /within 20 s \(inspection\.deadlineSeconds\).*Nothing ran in the target/);
});
