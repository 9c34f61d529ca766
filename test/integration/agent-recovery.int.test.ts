/**
 * Issue 10, the agent's recovery on the engine's staging layout, through the real agent process and real
 * CPython 3.14 targets: the agent is killed (SIGKILL) in the middle of a run, so the engine's staging stays in
 * the target exactly as the engine left it; the restarted agent finds the run by the run id it gave the engine
 * (findStagedRuns) and ends the job honestly, without ever running it again.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findStagedRuns } from '@pyreach/remote-exec';
import { runIdOf } from '../../apps/agent/src/recovery';
import {
  assertHostileOutcome,
  HOSTILE_USER,
  makeCanaries,
  userDir,
  type AttemptRecord,
} from '../hostile/kit';
import { AgentProcess, FakeControlPlane } from '../support/agent-harness';
import { startPython, type PyTarget } from '../support/python';

describe('agent recovery on the engine staging layout', { timeout: 240_000 }, () => {
  const cp = new FakeControlPlane();
  let agent: AgentProcess;
  let agentId: string;
  const targets: PyTarget[] = [];

  const target = async (t: PyTarget) => {
    const p = await cp.until(() => cp.processes.get(String(t.pid)), 30_000, `pid ${t.pid} in the inventory`);
    return { pid: p.pid, startTime: p.startTime };
  };
  /** Waits for the agent's log saying this job reached `state`. */
  const reached = (jobId: string, state: 'staged' | 'picked_up') =>
    cp.until(
      () => agent.logLines().find((l) => l.msg === 'job state' && l.jobId === jobId && l.state === state),
      30_000,
      `${jobId} ${state}`,
    );
  const staged = async (t: { pid: number; startTime: string }, jobId: string) => {
    const runs = await findStagedRuns(t);
    const mine = runs.filter((r) => r.runId === runIdOf(jobId));
    const out = mine.map((r) => ({ dir: r.dirInTarget, pickedUp: r.pickedUp() }));
    for (const r of runs) r.close();
    return out;
  };
  const restart = async () => {
    await agent.kill('SIGKILL');
    const auths = cp.authCount;
    agent.start();
    await cp.until(() => cp.authCount > auths, 30_000, 'the restarted agent');
  };

  before(async () => {
    await cp.start();
    agent = new AgentProcess({
      config: { server: cp.url, policy: { allowRoot: true }, shutdownGraceSeconds: 1, heartbeatSeconds: 1 },
    });
    const enrolled = await agent.cli(['enroll', '--token', cp.newToken()]);
    assert.equal(enrolled.code, 0, enrolled.stderr);
    agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
    agent.start();
  });

  after(async () => {
    await agent?.kill('SIGKILL');
    await cp.stop();
    await Promise.all(targets.map((t) => t.kill()));
  });

  test("a run picked up when the agent died is reported with the harness's own outcome, found by its run id", async () => {
    const t = await startPython('idle.py', { user: HOSTILE_USER });
    targets.push(t);
    const where = await target(t);
    const p = cp.job(
      agentId,
      where,
      'import time\nprint("before")\ntime.sleep(2)\nprint("after")\nresult = 7\n',
    );
    assert.deepEqual(await cp.dispatch(cp.sign(p)), { ok: true, accepted: true });
    await reached(p.jobId, 'picked_up');
    await agent.kill('SIGKILL');
    // The engine died with the agent: its staging is in the target, root-owned, with this job's run id.
    const left = await staged(where, p.jobId);
    assert.equal(left.length, 1, JSON.stringify(left));
    assert.equal(left[0]!.pickedUp, true);
    const auths = cp.authCount;
    agent.start();
    await cp.until(() => cp.authCount > auths, 30_000, 'the restarted agent');
    const r = (await cp.until(() => cp.resultOf(p.jobId), 60_000, 'recovered result')).result;
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(r.result, 7);
    assert.equal(r.output, 'before\nafter\n');
    assert.match(
      r.message ?? '',
      /read from the harness's own report in the target \(the job was not run again\)/,
    );
    assert.deepEqual(await staged(where, p.jobId), [], 'its staging is removed');
    const rec = agent.audit().find((a) => a.event === 'recovered' && a.jobId === p.jobId);
    assert.equal(rec?.outcome, 'succeeded');
  });

  test('a run staged but never picked up when the agent died is withdrawn so it can never run, and says so', async () => {
    const t = await startPython('blocked_main.py');
    targets.push(t);
    const where = await target(t);
    const p = cp.job(agentId, where, 'print("never")\n', {
      options: { inline: false, budgetSeconds: 30, pickupTimeoutSeconds: 60, backend: 'native' },
    });
    assert.deepEqual(await cp.dispatch(cp.sign(p)), { ok: true, accepted: true });
    await reached(p.jobId, 'staged');
    await agent.kill('SIGKILL');
    // The pre-created, still empty picked.json is not a pickup.
    const left = await staged(where, p.jobId);
    assert.deepEqual(
      left.map((x) => x.pickedUp),
      [false],
    );
    await restart();
    const r = (await cp.until(() => cp.resultOf(p.jobId), 60_000, 'recovered result')).result;
    assert.equal(r.status, 'pickup_timeout', JSON.stringify(r));
    assert.equal(r.errorCode, 'PICKUP_TIMEOUT');
    assert.match(r.message ?? '', /the staged script was removed so it can never run/);
    assert.equal(r.output, '');
    assert.deepEqual(await staged(where, p.jobId), [], 'nothing of it is left in the target');
  });
  test('a recovered run whose output the target hard-linked while the agent was down ends STAGING_TAMPERED', async () => {
    const canaries = makeCanaries();
    const mine = userDir();
    const t = await startPython('idle.py', { user: HOSTILE_USER });
    targets.push(t);
    try {
      const where = await target(t);
      const p = cp.job(agentId, where, 'import time\nprint("x")\ntime.sleep(2)\nresult = 1\n');
      assert.deepEqual(await cp.dispatch(cp.sign(p)), { ok: true, accepted: true });
      await reached(p.jobId, 'picked_up');
      await agent.kill('SIGKILL');
      const [left] = await staged(where, p.jobId);
      assert.ok(left, 'the run is left staged');
      // The target's user links its own out.txt elsewhere (allowed: it owns the file): the engine's check sees
      // two links, where the legacy reader would just have skipped the file and reported success.
      const dir = `/proc/${t.pid}/root${left.dir}`;
      execFileSync('ln', [join(dir, 'out.txt'), join(mine.path, 'out-link')], {
        uid: HOSTILE_USER.uid,
        gid: HOSTILE_USER.gid,
      });
      const landed: AttemptRecord[] = [{ dir, attack: 'link-out', name: 'out.txt', ok: true, error: null }];
      await restart();
      const r = (await cp.until(() => cp.resultOf(p.jobId), 60_000, 'recovered result')).result;
      assertHostileOutcome(r, landed, canaries, { everything: cp.eventsOf(p.jobId) });
      assert.match(
        r.message ?? '',
        /out\.txt is (a )?file with 2 link\(s\).*found when the agent read the staging back/,
      );
      const rec = agent.audit().find((a) => a.event === 'recovered' && a.jobId === p.jobId);
      assert.equal(rec?.code, 'STAGING_TAMPERED', 'recorded with what was found');
      assert.match(String(rec?.message), /2 link/);
    } finally {
      canaries.cleanup();
      mine.cleanup();
    }
  });
});
