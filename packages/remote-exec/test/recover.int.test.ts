/**
 * An engine that dies mid-run (the agent restarted) leaves its staging behind; findStagedRuns() finds it by the
 * run id in the root-owned job.json and reads it as safely as the run itself does.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { findStagedRuns } from '../src/index';
import { pythonPath, startPython } from '../../../test/support/python';
import { HOSTILE_USER } from '../../../test/hostile/kit';
import { settledLeftovers, sleep } from './helpers';
import { readStartTime } from '../src/procfs';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '../src/index.ts');

/** An engine in its own process, killed with SIGKILL as soon as the run reaches `state`. */
async function engineDiesAt(
  pid: number,
  runId: string,
  code: string,
  state: 'staged' | 'picked_up',
): Promise<void> {
  const script = `
    import { runInTarget } from ${JSON.stringify(SRC)};
    void runInTarget({ pid: ${pid}, runId: ${JSON.stringify(runId)}, code: ${JSON.stringify(code)},
      pickupTimeoutMs: 60000, budgetMs: 60000,
      onState: (s) => { if (s === ${JSON.stringify(state)}) process.stdout.write('AT\\n'); } });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error('engine never reached ' + state)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('AT')) {
        clearTimeout(timer);
        child.kill('SIGKILL');
        res();
      }
    });
  });
  await new Promise((r) => child.once('exit', r));
}

before(() => {
  pythonPath();
});

describe('recovering a run whose engine died', () => {
  it('reads the finished outcome of a run that was picked up, by its run id, and removes its staging', async () => {
    const t = await startPython('idle.py', { user: HOSTILE_USER });
    try {
      await engineDiesAt(
        t.pid,
        'aaaabbbbcccc0001',
        'import time\nprint("before")\ntime.sleep(0.5)\nresult = 7',
        'picked_up',
      );
      const start = readStartTime('/proc', t.pid)!;
      const runs = (await findStagedRuns({ pid: t.pid, startTime: start })).filter(
        (r) => r.runId === 'aaaabbbbcccc0001',
      );
      assert.equal(runs.length, 1);
      const run = runs[0]!;
      assert.equal(run.code.toString(), 'import time\nprint("before")\ntime.sleep(0.5)\nresult = 7');
      assert.equal(run.pickedUp(), true);
      let outcome = run.outcome();
      for (let i = 0; i < 100 && !outcome; i++) {
        await sleep(50);
        outcome = run.outcome();
      }
      assert.equal(outcome?.status, 'succeeded', JSON.stringify(outcome));
      assert.equal(outcome?.output, 'before\n');
      assert.equal(outcome?.result, 7);
      assert.deepEqual(run.remove(), []);
      assert.deepEqual(await settledLeftovers(t.pid), []);
      // Another process's start time: nothing is read.
      assert.deepEqual(await findStagedRuns({ pid: t.pid, startTime: '1' }), []);
    } finally {
      await t.kill();
    }
  });

  it('withdraws a run that was staged but never picked up, so the pending request can never run it', async () => {
    const t = await startPython('blocked_main.py');
    try {
      await engineDiesAt(t.pid, 'aaaabbbbcccc0002', 'print("never")', 'staged');
      const runs = (await findStagedRuns({ pid: t.pid, startTime: readStartTime('/proc', t.pid)! })).filter(
        (r) => r.runId === 'aaaabbbbcccc0002',
      );
      assert.equal(runs.length, 1);
      const run = runs[0]!;
      assert.equal(run.pickedUp(), false);
      assert.equal(run.outcome(), null);
      assert.equal(run.withdraw(), true);
      assert.deepEqual(run.remove(), []);
      assert.deepEqual(await settledLeftovers(t.pid), []);
    } finally {
      await t.kill();
    }
  });
});
