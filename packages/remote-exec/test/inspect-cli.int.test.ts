import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { ensureTestUser, pythonPath, startNonPython, startPython } from '../../../test/support/python';
import { sleep } from './helpers';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../bin/pyreach-exec.mjs');

function cli(args: string[], opts: { uid?: number; gid?: number } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, ...opts });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  pythonPath();
  ensureTestUser();
});

describe('pyreach-exec stacks and tasks', () => {
  it('prints the stacks contract as JSON and as a dump, innermost frame first, exit 0', async () => {
    const t = await startPython('stacks_known.py');
    try {
      for (let i = 0; i < 300 && readdirSync(`/proc/${t.pid}/task`).length !== 3; i++) await sleep(10);
      const r = cli(['stacks', '--pid', String(t.pid), '--json']);
      assert.equal(r.code, 0, r.stderr);
      const report = StacksReport.parse(JSON.parse(r.stdout));
      assert.equal(report.pid, t.pid);
      for (const th of report.threads)
        for (const k of ['tid', 'name', 'main', 'state', 'frames']) assert.ok(k in th, k);
      const worker = report.threads.find((x) => x.name === 'Worker-A')!;
      assert.deepEqual(
        worker.frames.slice(0, 5).map((f) => f.function),
        ['Condition.wait', 'Event.wait', 'a_inner', 'a_middle', 'a_outer'],
      );
      const text = cli(['stacks', '--pid', String(t.pid)]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(
        text.stdout,
        /^Process \d+: Python 3\.14\.\d+, read from memory in [\d.]+ ms \(\d+ bytes\), no code run$/m,
      );
      assert.match(text.stdout, /^Thread \d+ "Worker-A" blocked in futex$/m);
      assert.match(text.stdout, /^ {4}a_inner \(\/.*stacks_known\.py:\d+\)\n {4}a_middle /m);
      assert.match(text.stdout, /^Thread \d+ "[^"]+" \(main\) blocked in (pselect6|select)$/m);
    } finally {
      await t.kill();
    }
  });

  it('prints the tasks contract as JSON and as a tree of awaiting tasks, exit 0', async () => {
    const t = await startPython('asyncio_known.py');
    try {
      const r = cli(['tasks', '--pid', String(t.pid), '--json']);
      assert.equal(r.code, 0, r.stderr);
      const report = TasksReport.parse(JSON.parse(r.stdout));
      const leaf = report.tasks.find((x) => x.name === 'leaf')!;
      assert.deepEqual(
        leaf.stack.map((f) => f.function),
        ['Event.wait', 'leaf_wait'],
      );
      assert.deepEqual(leaf.awaitedBy.map((w) => w.name).sort(), ['Task-1', 'worker-2']);
      const tree = cli(['tasks', '--pid', String(t.pid)]);
      assert.equal(tree.code, 0, tree.stderr);
      assert.match(tree.stdout, /^└── \(T\) Task-1 \[0x[0-9a-f]+, thread \d+\]$/m);
      assert.match(tree.stdout, /worker_two \(.*asyncio_known\.py:\d+\)\n.*└── \(T\) leaf \[/);
      assert.match(tree.stdout, /└── \(F\) future 0x[0-9a-f]+\n.*└── \(T\) relayed \[/);
    } finally {
      await t.kill();
    }
  });

  it('exits 1 with the reason for a process that is not Python, and for a reader without ptrace rights', async () => {
    const np = startNonPython();
    try {
      await sleep(50);
      const r = cli(['stacks', '--pid', String(np.pid), '--json']);
      assert.equal(r.code, 1);
      const report = StacksReport.parse(JSON.parse(r.stdout));
      assert.equal(report.errors[0]!.code, 'NOT_PYTHON');
      const text = cli(['tasks', '--pid', String(np.pid)]);
      assert.equal(text.code, 1);
      assert.match(text.stderr, /failed: NOT_PYTHON/);
    } finally {
      np.kill();
    }
    // A root-owned target, read by an unprivileged user: the kernel refuses, the report says what to grant.
    const t = await startPython('idle.py');
    try {
      const user = ensureTestUser();
      const r = cli(['stacks', '--pid', String(t.pid), '--json'], { uid: user.uid, gid: user.gid });
      assert.equal(r.code, 1, r.stderr);
      const report = StacksReport.parse(JSON.parse(r.stdout));
      assert.equal(report.status, 'failed');
      assert.equal(report.errors[0]!.code, 'PERMISSION_DENIED');
      assert.match(report.errors[0]!.message, /CAP_SYS_PTRACE/);
    } finally {
      await t.kill();
    }
  });

  it('exits 2 for usage errors', () => {
    for (const args of [
      ['stacks'],
      ['stacks', '--pid', 'x'],
      ['tasks', '--pid', '1', '--bogus'],
      ['stacks', '--pid', '1', '--max-frames', '0'],
    ]) {
      const r = cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /Run "pyreach-exec (stacks|tasks) --help" for usage/);
    }
    const help = cli(['stacks', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: pyreach-exec stacks --pid N/);
  });
});
