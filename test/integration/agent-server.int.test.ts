/**
 * The real agent process (CLI), the REAL control-plane server (apps/web/server.ts, API-only, PostgreSQL) and
 * real CPython 3.14 targets: enrolment with a join token → inventory visible through the API → request
 * approved → output and result arrive; the control plane SIGKILLed mid-job and restarted → the result arrives
 * exactly once; the agent SIGKILLed mid-job and restarted → an honest end state and the code ran once; a level
 * change that undoes itself restores itself in the target with agent and control plane down, and the check at
 * expiry records it once they are back; a local policy refusal reaches the control plane with its reason.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runInTarget } from '@pyreach/remote-exec';
import { MIN_LOG_LEVEL_DURATION_SECONDS } from '@pyreach/scripts';
import { AgentProcess } from '../support/agent-harness';
import type { InspectionView } from '@pyreach/protocol/api';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { knownStacks, startPython, type PyTarget } from '../support/python';
import { eventually } from '../support/eventually';

type Exec = {
  id: string;
  jobId: string;
  state: string;
  errorCode: string | null;
  errorMessage?: string | null;
  output?: string | null;
  result?: unknown;
  pid: number;
};
type Req = { id: string; state: string; executions?: Exec[] };
type Proc = { pid: number; startTime: string; agentId: string; pythonVersion: string | null };

const sideEffect = (name: string) => `/tmp/pyreach-agent-srv-${process.pid}-${name}.txt`;
const appendCode = (file: string, extra = '') =>
  `with open(${JSON.stringify(file)}, "a") as f:\n    f.write("ran\\n")\n${extra}`;
const lines = (path: string) =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0;

describe('agent against the real control plane', { timeout: 600_000 }, () => {
  let cp: ControlPlane;
  let admin: ApiClient, operator: ApiClient, approver: ApiClient, viewer: ApiClient;
  let agent: AgentProcess;
  let host: PyTarget;
  let container: PyTarget;
  const files: string[] = [];
  const extra: PyTarget[] = [];

  const proc = async (t: PyTarget): Promise<Proc> =>
    eventually(`pid ${t.pid} in /api/fleet/processes`, async () => {
      const r = await admin.ok(admin.get<{ processes: Proc[] }>(`/api/fleet/processes?limit=10000`));
      return r.processes.find((p) => p.pid === t.pid);
    });
  const getReq = async (id: string) =>
    (await operator.ok(operator.get<{ request: Req }>(`/api/requests/${id}`))).request;
  /** Create a custom-code request on one target and approve it. */
  const approved = async (t: PyTarget, code: string, reason: string): Promise<Req> => {
    const p = await proc(t);
    const created = await operator.ok(
      operator.post<{ request: Req }>('/api/requests', {
        kind: 'custom',
        code,
        targets: {
          type: 'processes',
          processes: [{ agentId: agent_id(), pid: p.pid, startTime: p.startTime }],
        },
        reason,
      }),
    );
    await approver.ok(
      approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve', comment: 'ok' }),
    );
    return created.request;
  };
  const agent_id = (): string =>
    JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
  const terminal = (r: Req) =>
    ['succeeded', 'partially_succeeded', 'failed', 'cancelled', 'refused', 'expired'].includes(r.state);

  before(async () => {
    [host, container] = await Promise.all([
      startPython('idle.py', { style: 'host' }),
      startPython('idle.py', { style: 'container' }),
    ]);
    cp = await startControlPlane('postgres');
    const clients = await Promise.all(
      [USERS.admin, USERS.operator, USERS.approver, USERS.viewer].map((u) => ApiClient.signIn(cp.baseUrl, u)),
    );
    [admin, operator, approver, viewer] = clients as [ApiClient, ApiClient, ApiClient, ApiClient];
    await admin.ok(
      admin.post('/api/policies', {
        name: 'agent-it',
        matchLabels: { env: 'agent-it' },
        priority: 100,
        requiredApprovals: 1,
        allowCustomCode: true,
        approverRoles: ['approver', 'admin'],
      }),
    );
    const token = (
      await admin.ok(
        admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'agent-it' } }),
      )
    ).joinToken.token;
    agent = new AgentProcess({ config: { server: cp.baseUrl, policy: { allowRoot: true } } });
    const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=agent-it']);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    assert.ok(!agent.logs().includes(token));
    agent.start();
  });

  after(async () => {
    await agent?.kill('SIGKILL');
    await cp?.cleanup();
    await Promise.all([host?.kill(), container?.kill(), ...extra.map((t) => t.kill())]);
    for (const f of files) rmSync(f, { force: true });
  });

  test('enrolled agent: its host-style and container-style Python processes are visible through the API', async () => {
    const h = await proc(host);
    const c = await proc(container);
    // The API does not expose the container flag; both belong to this agent and were inspected as 3.14.
    assert.equal(h.agentId, agent_id());
    assert.equal(c.agentId, agent_id());
    assert.match(h.pythonVersion ?? '', /^3\.14/);
    assert.match(c.pythonVersion ?? '', /^3\.14/);
  });

  test('an approved request runs in a host-style target: output and result arrive', async () => {
    const file = sideEffect('host');
    files.push(file);
    const req = await approved(
      host,
      appendCode(file, 'print("hello from the agent")\nresult = {"n": 42}\n'),
      'agent integration: host',
    );
    const done = await eventually('request to finish', async () => {
      const r = await getReq(req.id);
      return terminal(r) && r;
    });
    const ex = done.executions![0]!;
    assert.equal(done.state, 'succeeded', JSON.stringify(ex));
    assert.equal(ex.output, 'hello from the agent\n');
    assert.deepEqual(ex.result, { n: 42 });
    assert.equal(lines(file), 1);
    assert.ok(
      agent.audit().some((a) => a.jobId === ex.jobId && a.event === 'finished' && a.outcome === 'succeeded'),
    );
  });

  test('the agent announced protocol v2, and the control plane signed its jobs as v2 envelopes bound to the approval', () => {
    const status = JSON.parse(readFileSync(join(agent.stateDir, 'status.json'), 'utf8'));
    assert.equal(status.protocolVersion, 2, 'v2 at the handshake, accepted by the real gateway');
    const received = agent.audit().filter((a) => a.event === 'received');
    assert.ok(received.length > 0);
    assert.ok(
      received.every((a) => a.v === 2 && a.action === 'exec'),
      JSON.stringify(received),
    );
    assert.ok(agent.audit().some((a) => a.event === 'finished' && a.outcome === 'succeeded'));
  });

  test('NUL and terminal escapes in output and result reach PostgreSQL as safe text, and the next job on the host is recorded correctly', async () => {
    const req = await approved(
      host,
      'print("a\\x00b\\x1b[2J")\nresult = {"k\\x00": "v\\x00"}\n',
      'agent integration: safe text',
    );
    const done = await eventually('the NUL request to finish', async () => {
      const r = await getReq(req.id);
      return terminal(r) && r;
    });
    const ex = done.executions![0]!;
    assert.equal(done.state, 'succeeded', JSON.stringify(ex));
    assert.equal(ex.output, 'a\u{10FF00}b\u{10FF1B}[2J\n', 'stored losslessly as safe text');
    assert.deepEqual(ex.result, { 'k\u{10FF00}': 'v\u{10FF00}' });
    const next = await approved(host, 'print("next")\n', 'agent integration: after NUL');
    const after = await eventually('the next request to finish', async () => {
      const r = await getReq(next.id);
      return terminal(r) && r;
    });
    assert.equal(after.state, 'succeeded', JSON.stringify(after.executions));
    assert.equal(after.executions![0]!.output, 'next\n');
    assert.ok(!agent.audit().some((a) => a.event === 'delivery_rejected'), 'nothing was refused');
  });

  test('an approved request runs in a container-style target', async () => {
    const inTarget = `/tmp/agent-srv-${process.pid}.txt`;
    files.push(join(container.rootOnHost, inTarget));
    const req = await approved(
      container,
      appendCode(inTarget, 'import os\nprint(os.getpid())\n'),
      'agent integration: container',
    );
    const done = await eventually('request to finish', async () => {
      const r = await getReq(req.id);
      return terminal(r) && r;
    });
    assert.equal(done.state, 'succeeded', JSON.stringify(done.executions));
    assert.equal(done.executions![0]!.output, '1\n');
    assert.equal(lines(join(container.rootOnHost, inTarget)), 1);
  });

  test('the control plane SIGKILLed mid-job and restarted: the result arrives exactly once', async () => {
    const file = sideEffect('cp-kill');
    files.push(file);
    const req = await approved(
      host,
      appendCode(file, 'import time\nprint("start")\ntime.sleep(4)\nprint("end")\nresult = "ok"\n'),
      'agent integration: control plane crash',
    );
    await eventually('picked up', async () => {
      const r = await getReq(req.id);
      return r.executions?.[0]?.state === 'picked_up';
    });
    cp.proc.kill('SIGKILL');
    await new Promise((r) => cp.proc.once('exit', r));
    await new Promise((r) => setTimeout(r, 5000)); // the job ends while the control plane is down
    await cp.restart();
    [operator, admin] = await Promise.all([
      ApiClient.signIn(cp.baseUrl, USERS.operator),
      ApiClient.signIn(cp.baseUrl, USERS.admin),
    ]);
    const done = await eventually(
      'result after restart',
      async () => {
        const r = await getReq(req.id);
        return terminal(r) && r;
      },
      60_000,
    );
    const ex = done.executions![0]!;
    assert.equal(done.state, 'succeeded', JSON.stringify(ex));
    assert.equal(ex.output, 'start\nend\n', 'each output chunk applied exactly once');
    assert.equal(lines(file), 1);
    const trail = await admin.ok(
      admin.get<{ events: { action: string; subjectId?: string }[] }>(
        `/api/audit?subjectId=${req.id}&limit=100`,
      ),
    );
    assert.equal(
      trail.events.filter((e) => e.action === 'request.succeed' || e.action === 'execution.succeed').length <=
        1,
      true,
    );
  });

  test('the agent SIGKILLed mid-job and restarted: an honest end state, and the code ran once', async () => {
    const file = sideEffect('agent-kill');
    files.push(file);
    const req = await approved(
      host,
      appendCode(file, 'import time\ntime.sleep(3)\nprint("finished")\nresult = 7\n'),
      'agent integration: agent crash',
    );
    await eventually('picked up', async () => {
      const r = await getReq(req.id);
      return r.executions?.[0]?.state === 'picked_up';
    });
    await agent.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 4000));
    agent.start();
    const done = await eventually(
      'honest end state',
      async () => {
        const r = await getReq(req.id);
        return terminal(r) && r.executions?.[0]?.state !== 'agent_lost' && r;
      },
      60_000,
    );
    const ex = done.executions![0]!;
    // The harness finished inside the target while the agent was down; the restarted agent read its report.
    assert.equal(ex.state, 'succeeded', JSON.stringify(ex));
    assert.equal(ex.result, 7);
    assert.equal(lines(file), 1, 'the code ran exactly once');
    assert.ok(agent.audit().some((a) => a.jobId === ex.jobId && a.event === 'recovered'));
  });

  test('process:inspect through the fleet: an operator reads the stacks the target itself sees, without approval, audited', async () => {
    const { t, view } = await knownStacks();
    extra.push(t);
    const p = await proc(t);
    const body = { agentId: agent_id(), pid: p.pid, startTime: p.startTime, what: 'stacks' };
    const refused = await viewer.post('/api/fleet/processes/inspect', body);
    assert.equal(refused.status, 403, 'a viewer may not inspect');
    const started = await operator.ok(
      operator.post<{ inspection: InspectionView }>('/api/fleet/processes/inspect', body),
    );
    assert.ok(['queued', 'sent'].includes(started.inspection.state), started.inspection.state);
    const done = await eventually('the inspection to end', async () => {
      const r = await operator.ok(
        operator.get<{ inspection: InspectionView }>(`/api/fleet/inspections/${started.inspection.id}`),
      );
      return !['queued', 'sent'].includes(r.inspection.state) && r.inspection;
    });
    assert.equal(done.state, 'succeeded', JSON.stringify(done).slice(0, 2000));
    const byTid = new Map(done.stacks!.threads.map((x) => [x.tid, x]));
    for (const v of view.threads) {
      assert.deepEqual(
        byTid.get(v.tid)?.frames,
        v.frames.map(({ function: fn, file, line }) => ({ function: fn, file, line })),
        `stack of ${v.name}`,
      );
      assert.equal(byTid.get(v.tid)?.main, v.main);
    }
    const audit = await admin.ok(
      admin.get<{ events: { action: string; actorId: string; data: { jobId?: string } }[] }>(
        '/api/audit?action=process.inspect',
      ),
    );
    assert.ok(
      audit.events.some((e) => e.data.jobId === started.inspection.id),
      'the inspection is in the audit trail',
    );
    assert.ok(
      agent.audit().some((a) => a.jobId === started.inspection.id && a.event === 'finished'),
      "and in the agent's own audit log",
    );
    const tasks = await operator.ok(
      operator.post<{ inspection: InspectionView }>('/api/fleet/processes/inspect', {
        ...body,
        what: 'tasks',
      }),
    );
    const taskDone = await eventually('the tasks inspection to end', async () => {
      const r = await operator.ok(
        operator.get<{ inspection: InspectionView }>(`/api/fleet/inspections/${tasks.inspection.id}`),
      );
      return !['queued', 'sent'].includes(r.inspection.state) && r.inspection;
    });
    // stacks_known.py runs no event loop: the reader says so rather than inventing tasks.
    assert.ok(['succeeded', 'failed'].includes(taskDone.state), JSON.stringify(taskDone).slice(0, 1000));
    assert.equal(taskDone.stacks, null);
  });

  test('a level change that undoes itself: with the agent and the control plane down the target restores itself; back up, the check at expiry records it once', async () => {
    // Logger "main" at ERROR; a DEBUG and an ERROR line every 0.2 s.
    const t = await startPython('log_service.py', { readyTimeoutMs: 30_000 });
    extra.push(t);
    const p = await proc(t);
    const levelOf = async () => {
      // Straight through the engine: neither agent nor control plane involved.
      const r = await runInTarget({
        pid: t.pid,
        code: 'import logging\nresult = logging.getLevelName(logging.getLogger("main").level)',
        pickupTimeoutMs: 15_000,
      });
      assert.equal(r.status, 'succeeded', r.message);
      return r.result;
    };
    const created = await operator.ok(
      operator.post<{ request: Req & { params: Record<string, unknown> } }>('/api/requests', {
        kind: 'library',
        scriptId: 'logging.set_level',
        params: { logger: 'main', level: 'DEBUG', durationSeconds: MIN_LOG_LEVEL_DURATION_SECONDS },
        targets: {
          type: 'processes',
          processes: [{ agentId: agent_id(), pid: p.pid, startTime: p.startTime }],
        },
        reason: 'agent integration: a change that undoes itself',
      }),
    );
    const id = created.request.id;
    assert.equal(created.request.params.restoreToken, id);
    await approver.ok(approver.post(`/api/requests/${id}/reviews`, { decision: 'approve', comment: 'ok' }));
    const done = await eventually('the change made', async () => {
      const r = await getReq(id);
      return terminal(r) && r;
    });
    const setAt = Date.now();
    assert.equal(done.state, 'succeeded', JSON.stringify(done.executions));
    assert.match(done.executions![0]!.output ?? '', /ERROR -> DEBUG; restores itself at .* \(in 10 s/);
    await t.waitForStdout(/DEBUG main context/, 5_000, t.stdout().length);

    // Both gone, no goodbye: nothing of ours runs until the target's own timer restores the level.
    await agent.kill('SIGKILL');
    cp.proc.kill('SIGKILL');
    await new Promise((r) => cp.proc.once('exit', r));
    assert.equal(await levelOf(), 'DEBUG', 'still changed before the duration is up');
    await new Promise((r) => setTimeout(r, Math.max(0, setAt + 10_700 - Date.now())));
    const mark = t.stdout().length;
    await new Promise((r) => setTimeout(r, 800));
    assert.doesNotMatch(t.stdout().slice(mark), /DEBUG main context/, 'DEBUG lines stopped by themselves');
    assert.equal(await levelOf(), 'ERROR');

    // Back up — the agent now runs library scripts only, so the follow-up must be the approved source, unmodified.
    await cp.restart();
    [operator, admin] = await Promise.all([
      ApiClient.signIn(cp.baseUrl, USERS.operator),
      ApiClient.signIn(cp.baseUrl, USERS.admin),
    ]);
    agent.writeConfig({ server: cp.baseUrl, policy: { allowRoot: true, allowCustomCode: false } });
    agent.start();
    type Restore = { runs: { mode: string; state: string; outcome: string | null; levels: unknown[] }[] };
    const restore = await eventually(
      'the check at expiry recorded',
      async () => {
        const r = await operator.ok(operator.get<{ restore: Restore }>(`/api/requests/${id}/restore`));
        return r.restore.runs[0]?.state === 'succeeded' && r.restore;
      },
      60_000,
    );
    assert.equal(restore.runs.length, 1);
    assert.equal(restore.runs[0]!.mode, 'check');
    assert.equal(restore.runs[0]!.outcome, 'restored');
    assert.deepEqual(restore.runs[0]!.levels[0], {
      kind: 'logger',
      name: 'main',
      restored: 'ERROR',
      from: 'DEBUG',
    });
    const trail = await admin.ok(
      admin.get<{ events: { action: string; data: { outcome?: string } }[] }>(
        `/api/audit?subjectId=${id}&limit=100`,
      ),
    );
    const checked = trail.events.filter((e) => e.action === 'request.restore_checked');
    assert.equal(checked.length, 1, 'claimed and recorded once');
    assert.equal(checked[0]!.data.outcome, 'restored');
    assert.equal(trail.events.filter((e) => e.action === 'request.restore_send').length, 1);
  });

  test('a local policy refusal reaches the control plane with its reason', async () => {
    // What the control plane's pre-flight says of a custom-code request on the root host-style target.
    const reasons = async (): Promise<string[]> => {
      const p = await proc(host);
      const r = await operator.ok(
        operator.post<{ preflight: { targets: { reasons: { code: string; level: string }[] }[] } }>(
          '/api/ui/preflight',
          {
            kind: 'custom',
            code: 'print(1)',
            targets: {
              type: 'processes',
              processes: [{ agentId: agent_id(), pid: p.pid, startTime: p.startTime }],
            },
          },
        ),
      );
      return r.preflight.targets[0]!.reasons.filter((x) => x.level === 'doomed').map((x) => x.code);
    };
    // The agent refuses on its own what the control plane could not know: its policy turned stricter after the
    // request was filed and approved against the policy it last reported (root targets and custom code allowed).
    await agent.kill('SIGTERM');
    agent.writeConfig({ server: cp.baseUrl, policy: { allowRoot: true } });
    agent.start();
    await agent.waitForLog('authenticated', 30_000, 0);
    await eventually('the permissive policy reported', async () => (await reasons()).length === 0);
    await agent.kill('SIGTERM');
    agent.writeConfig({ server: cp.baseUrl, policy: { allowRoot: false } });
    const file = sideEffect('policy');
    files.push(file);
    const req = await approved(host, appendCode(file), 'agent integration: policy');
    agent.start();
    await agent.waitForLog('authenticated', 30_000, 0);
    const done = await eventually('refused', async () => {
      const r = await getReq(req.id);
      return terminal(r) && r;
    });
    const ex = done.executions![0]!;
    assert.equal(ex.state, 'refused', JSON.stringify(ex));
    assert.equal(ex.errorCode, 'POLICY_ROOT_TARGET');
    assert.match(ex.errorMessage ?? '', /allowRoot/);
    assert.equal(lines(file), 0);
    assert.ok(
      agent
        .audit()
        .some((a) => a.jobId === ex.jobId && a.event === 'refused' && a.code === 'POLICY_ROOT_TARGET'),
    );
    // Now the control plane knows the stricter policy: such a request is refused at filing, nothing is filed.
    await eventually('the strict policy reported', async () =>
      (await reasons()).includes('AGENT_POLICY_ROOT'),
    );
    const p = await proc(host);
    const refused = await operator.post('/api/requests', {
      kind: 'custom',
      code: appendCode(file),
      targets: {
        type: 'processes',
        processes: [{ agentId: agent_id(), pid: p.pid, startTime: p.startTime }],
      },
      reason: 'agent integration: policy, known at filing',
    });
    assert.equal(refused.status, 422);
    assert.equal(!refused.body.ok && refused.body.error.code, 'ALL_TARGETS_DOOMED');
  });

  test('revoking the agent through the API stops it with exit code 78 and it stays refused', async () => {
    await admin.ok(admin.post(`/api/agents/${agent_id()}/revoke`, { reason: 'host decommissioned' }));
    assert.equal(await agent.exited, 78);
    assert.ok(agent.audit().some((a) => a.event === 'revoked' && /decommissioned/.test(String(a.message))));
    const status = JSON.parse((await agent.cli(['status', '--json'])).stdout);
    assert.equal(status.connection.state, 'revoked');
    agent.start();
    assert.equal(await agent.exited, 78, 'refused at the handshake from then on');
  });
});
