/**
 * Issue 10, the hostile target through the real agent: a CPython 3.14 target of uid 65534 in a private
 * container-style root, and an attacker of the same uid (test/hostile/kit.ts) planting links, FIFOs and hard
 * links (polling and inotify) in every staging directory the engine makes there, swapping and growing what it
 * can — while jobs go through the real agent process.
 * Every path goes through the REAL control plane (request → approval → dispatch → result): read, write and
 * cleanup; cancel through the API; the agent SIGTERMed past its grace (the end reaches the control plane from
 * the restarted agent's durable outbox).
 * The verdict is the kit's: nothing outside the staging directory is read, written or chowned, nothing secret
 * comes back, and a run ends STAGING_TAMPERED exactly when an attempt landed — recorded with what was found.
 * Also: six concurrent jobs into one target, and the agent's own key as the attacker's link target.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  assertHostileOutcome,
  existingCanary,
  HOSTILE_USER,
  makeCanaries,
  startAttacker,
  type Attack,
  type Attacker,
} from '../hostile/kit';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { privateContainerRoot, startPython, withPythonRoot, type PyTarget } from '../support/python';

type Exec = {
  id: string;
  jobId: string;
  state: string;
  errorCode: string | null;
  errorMessage?: string | null;
  output?: string | null;
  result?: unknown;
};
type Req = { id: string; state: string; executions?: Exec[] };
type Proc = { pid: number; startTime: string; agentId: string };

const ALL: Attack[] = ['symlink', 'fifo', 'hardlink', 'swap-dir', 'swap-out', 'link-out', 'grow-out'];
const terminal = (s: string) =>
  ['succeeded', 'partially_succeeded', 'failed', 'cancelled', 'refused', 'expired'].includes(s);
const sizeOf = (p: string) => (existsSync(p) ? statSync(p).size : 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A uid-65534 container-style target in its own root; `userTmp`: its /tmp belongs to it (not sticky). */
async function hostileTarget(userTmp: boolean, script = 'idle.py') {
  const copy = privateContainerRoot();
  if (userTmp) {
    chownSync(join(copy.root, 'tmp'), HOSTILE_USER.uid, HOSTILE_USER.gid);
    chmodSync(join(copy.root, 'tmp'), 0o755);
  }
  const t = await withPythonRoot(copy.root, () =>
    startPython(script, { style: 'container', user: HOSTILE_USER }),
  );
  return {
    t,
    tmp: join(copy.root, 'tmp'),
    async kill() {
      await t.kill();
      copy.cleanup();
    },
  };
}

describe('hostile target through the real agent and the real control plane', { timeout: 600_000 }, () => {
  let cp: ControlPlane;
  let admin: ApiClient, operator: ApiClient, approver: ApiClient;
  let agent: AgentProcess;
  let agentId: string;

  const proc = async (t: PyTarget): Promise<Proc> =>
    eventually(`pid ${t.pid} in /api/fleet/processes`, async () => {
      const r = await admin.ok(admin.get<{ processes: Proc[] }>(`/api/fleet/processes?limit=10000`));
      return r.processes.find((p) => p.pid === t.pid);
    });
  const getReq = async (id: string) =>
    (await operator.ok(operator.get<{ request: Req }>(`/api/requests/${id}`))).request;
  const approved = async (t: PyTarget, code: string, reason: string): Promise<Req> => {
    const p = await proc(t);
    const created = await operator.ok(
      operator.post<{ request: Req }>('/api/requests', {
        kind: 'custom',
        code,
        targets: { type: 'processes', processes: [{ agentId, pid: p.pid, startTime: p.startTime }] },
        reason,
      }),
    );
    await approver.ok(
      approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve', comment: 'ok' }),
    );
    return created.request;
  };
  const finished = (id: string) =>
    eventually(
      'request to finish',
      async () => {
        const r = await getReq(id);
        return terminal(r.state) && r;
      },
      90_000,
    );

  before(async () => {
    cp = await startControlPlane('postgres');
    const clients = await Promise.all(
      [USERS.admin, USERS.operator, USERS.approver].map((u) => ApiClient.signIn(cp.baseUrl, u)),
    );
    [admin, operator, approver] = clients as [ApiClient, ApiClient, ApiClient];
    await admin.ok(
      admin.post('/api/policies', {
        name: 'hostile-it',
        matchLabels: { env: 'hostile-it' },
        priority: 100,
        requiredApprovals: 1,
        allowCustomCode: true,
        approverRoles: ['approver', 'admin'],
      }),
    );
    const token = (
      await admin.ok(
        admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'hostile-it' } }),
      )
    ).joinToken.token;
    // A short shutdown grace: the SIGTERM test waits it out.
    agent = new AgentProcess({ config: { server: cp.baseUrl, shutdownGraceSeconds: 1 } });
    const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=hostile-it']);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
    agent.start();
  });

  after(async () => {
    await agent?.kill('SIGKILL');
    await cp?.cleanup();
  });

  for (const userTmp of [false, true])
    for (const mode of ['poll', 'inotify'] as const) {
      test(`read, write and cleanup paths: every attack (${mode}), ${userTmp ? "a /tmp the target's user owns" : 'a sticky /tmp'}`, async () => {
        const target = await hostileTarget(userTmp);
        const canaries = makeCanaries();
        let attacker: Attacker | null = null;
        try {
          attacker = await startAttacker({ bases: [target.tmp], mode, attacks: ALL, canaries });
          const req = await approved(
            target.t,
            'import time\nprint("hostile read")\ntime.sleep(0.5)\nresult = 3\n',
            `hostile ${mode} ${userTmp}`,
          );
          const done = await finished(req.id);
          await sleep(200);
          const ex = done.executions![0]!;
          const landed = attacker.attempts().filter((a) => a.ok);
          assert.ok(attacker.attempts().length > 0, 'the attacker went at the run');
          const outcome = {
            status: done.state,
            ...(ex.errorCode ? { errorCode: ex.errorCode } : {}),
            ...(ex.errorMessage ? { message: ex.errorMessage } : {}),
          };
          const fin = agent.audit().find((a) => a.event === 'finished' && a.jobId === ex.jobId);
          assertHostileOutcome(outcome, landed, canaries, { everything: { done, fin } });
          if (landed.length) {
            // Recorded with what was found: in the execution and in the agent's local audit.
            assert.match(ex.errorMessage ?? '', /tamper/);
            assert.equal(fin?.code, 'STAGING_TAMPERED');
            assert.equal(fin?.message, ex.errorMessage);
          } else {
            assert.equal(ex.output, 'hostile read\n');
          }
          // Cleanup path: nothing of the engine's is left in the target's /tmp (what the attacker made is its own).
          const left = readdirSync(target.tmp).filter((n) => /^pyreach-[0-9a-f]{16}$/.test(n));
          assert.deepEqual(
            left.filter((n) => {
              // (The attacker's own link in place of a directory it moved away is its, not the engine's.)
              const st = lstatSync(join(target.tmp, n));
              return st.isDirectory() && st.uid === 0;
            }),
            [],
            'no staging directory of the engine is left',
          );
        } finally {
          await attacker?.kill();
          await target.kill();
          canaries.cleanup();
        }
      });
    }

  /** A job under attack, running (a heartbeat file grows), then stopped by `stop`: judged like the others. */
  async function stoppedUnderAttack(how: string, stop: (requestId: string) => Promise<void>) {
    const target = await hostileTarget(false);
    const canaries = makeCanaries();
    let attacker: Attacker | null = null;
    try {
      attacker = await startAttacker({
        bases: [target.tmp],
        mode: 'inotify',
        attacks: ['symlink', 'fifo', 'hardlink', 'swap-out'],
        canaries,
      });
      // The heartbeat is written in the target's own /tmp (its private root's, watched from the host side).
      const hbInTarget = `/tmp/hb-cp-${how}-${Date.now()}.txt`;
      const hb = join(target.tmp, hbInTarget.slice('/tmp/'.length));
      const req = await approved(
        target.t,
        `import time\nprint("so far")\nwhile True:\n    with open(${JSON.stringify(hbInTarget)}, "a") as f:\n        f.write("x")\n    time.sleep(0.05)\n`,
        `hostile ${how} through the control plane`,
      );
      await eventually('the job running', () => sizeOf(hb) > 10, 30_000);
      await stop(req.id);
      const done = await finished(req.id);
      const size = sizeOf(hb);
      await sleep(1000);
      assert.equal(sizeOf(hb), size, 'the heartbeat stopped growing: the code stopped');
      const ex = done.executions![0]!;
      const landed = attacker.attempts().filter((a) => a.ok);
      const fin = agent.audit().find((a) => a.event === 'finished' && a.jobId === ex.jobId);
      assertHostileOutcome(
        {
          status: ex.state,
          ...(ex.errorCode ? { errorCode: ex.errorCode } : {}),
          ...(ex.errorMessage ? { message: ex.errorMessage } : {}),
        },
        landed,
        canaries,
        { everything: { done, fin }, expectedStatus: 'cancelled' },
      );
      if (!landed.length) assert.match(ex.output ?? '', /^so far\n/, 'cancelled with its output so far');
      return { done, landed };
    } finally {
      await attacker?.kill();
      await target.kill();
      canaries.cleanup();
    }
  }

  test('cancel path through the control plane: a running job under attack, cancelled through the API, stops and ends cancelled (or STAGING_TAMPERED)', async () => {
    const { done, landed } = await stoppedUnderAttack('cancel', async (id) => {
      await operator.ok(operator.post(`/api/requests/${id}/cancel`, {}));
    });
    if (!landed.length) assert.equal(done.state, 'cancelled');
  });

  test('agent-SIGTERM path through the control plane: a job running past the grace under attack is stopped, and its end reaches the control plane', async () => {
    await stoppedUnderAttack('sigterm', async () => {
      assert.equal(await agent.kill('SIGTERM'), 0, 'a clean exit');
      // The result waits in the durable outbox; the restarted agent delivers it.
      agent.start();
    });
  });

  test("the agent's own agent.key as the attacker's link target: nothing of it comes back, it is untouched", async () => {
    const target = await hostileTarget(true);
    const key = existingCanary(join(agent.stateDir, 'agent.key'));
    let attacker: Attacker | null = null;
    try {
      attacker = await startAttacker({
        bases: [target.tmp],
        mode: 'inotify',
        attacks: ['symlink', 'swap-out', 'swap-dir', 'hardlink'],
        canaries: key,
      });
      const req = await approved(target.t, 'print("k")\nresult = 1\n', 'hostile agent.key');
      const done = await finished(req.id);
      const ex = done.executions![0]!;
      const landed = attacker.attempts().filter((a) => a.ok);
      const outcome = {
        status: done.state,
        ...(ex.errorCode ? { errorCode: ex.errorCode } : {}),
        ...(ex.errorMessage ? { message: ex.errorMessage } : {}),
      };
      assertHostileOutcome(outcome, landed, key, { everything: done });
      // The agent still works with its key: the next job runs.
      const again = await finished((await approved(target.t, 'result = 2\n', 'after the attack')).id);
      assert.ok(['succeeded', 'failed'].includes(again.state), JSON.stringify(again));
    } finally {
      await attacker?.kill();
      await target.kill();
    }
  });

  test('six concurrent jobs into one target: each succeeds with its own output or is refused PENDING_CONFLICT; the agent reports "queued behind job X"', async () => {
    const target = await hostileTarget(false);
    try {
      const reqs = await Promise.all(
        [0, 1, 2, 3, 4, 5].map((i) =>
          approved(target.t, `import time\ntime.sleep(0.3)\nprint("job ${i}")\nresult = ${i}\n`, `six ${i}`),
        ),
      );
      const done = await Promise.all(reqs.map((r) => finished(r.id)));
      done.forEach((d, i) => {
        const ex = d.executions![0]!;
        if (d.state === 'succeeded') {
          assert.equal(ex.output, `job ${i}\n`, 'its own output');
          assert.equal(ex.result, i);
        } else {
          assert.equal(d.state, 'refused', JSON.stringify(ex));
          assert.equal(ex.errorCode, 'PENDING_CONFLICT');
        }
      });
      const jobIds = new Set(done.map((d) => d.executions![0]!.jobId));
      const queued = agent.audit().filter((a) => a.event === 'queued' && jobIds.has(String(a.jobId)));
      assert.ok(queued.length > 0, 'some of them waited');
      for (const q of queued)
        assert.ok(jobIds.has(String(q.behind)), `queued behind one of the six: ${q.behind}`);
    } finally {
      await target.kill();
    }
  });
});
