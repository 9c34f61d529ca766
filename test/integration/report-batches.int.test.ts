/**
 * Issue 15, batched reports, through the real server process on PostgreSQL and real socket.io connections
 * (simulated agents: test/support/test-agent.ts speaks the real /agents protocol with its own keys):
 *  - `maxFailures` is exact at rollout concurrency 1,000: a selector over 1,200 processes whose every job fails,
 *    maxFailures 10 — read from the audit chain's order (the one order every send and result was committed in),
 *    no job is sent after the result that reached the limit, and sends − ends never exceeds 1,000;
 *  - exactly once across a control-plane SIGKILL in the middle of batches: 300 results sent at once (batches of
 *    at most 100, so several are in flight when it dies); every report acknowledged before the kill is stored,
 *    the agent resends everything after the restart, and each execution has one result, the request one end.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { enroll, fakeProcess, TestAgent, type EnrolledAgent } from '../support/test-agent';

type Req = { id: string; state: string; executions?: { jobId: string; state: string }[] };

describe('batched reports (PostgreSQL, real server, simulated agents)', { timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let admin: ApiClient, operator: ApiClient, approver: ApiClient;
  const open: TestAgent[] = [];

  before(async () => {
    cp = await startControlPlane('postgres', { PYREACH_REPORT_BATCH_MAX: '100' });
    [admin, operator, approver] = await Promise.all([
      ApiClient.signIn(cp.baseUrl, USERS.admin),
      ApiClient.signIn(cp.baseUrl, USERS.operator),
      ApiClient.signIn(cp.baseUrl, USERS.approver),
    ]);
  });
  after(async () => {
    for (const a of open) a.close();
    await cp?.cleanup();
  });

  /** `agents` simulated agents labelled env=<env>, each reporting `perAgent` Python processes. */
  async function fleet(env: string, agents: number, perAgent: number) {
    await admin.ok(
      admin.post('/api/policies', {
        name: `batch-${env}`,
        matchLabels: { env },
        priority: 50,
        requiredApprovals: 1,
        allowCustomCode: true,
      }),
    );
    const out: { enrolled: EnrolledAgent; ta: TestAgent }[] = [];
    for (let i = 0; i < agents; i++) {
      const token = (
        await admin.ok(admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env } }))
      ).joinToken.token;
      const enrolled = await enroll(cp.baseUrl, token, { hostname: `${env}-${i}`, labels: { env } });
      const ta = await TestAgent.connect(enrolled);
      open.push(ta);
      const procs = Array.from({ length: perAgent }, (_, p) =>
        fakeProcess(1000 + p, { cmdline: ['python3.14', `${env}.py`] }),
      );
      assert.equal((await ta.snapshot(procs, { env }, `${env}-${i}`)).ok, true);
      out.push({ enrolled, ta });
    }
    return out;
  }

  async function approvedSelector(env: string, rollout: { concurrency: number; maxFailures: number }) {
    const created = await operator.ok(
      operator.post<{ request: Req }>('/api/requests', {
        kind: 'custom',
        code: 'print("batch")',
        targets: { type: 'selector', labels: { env }, process: { cmdlineContains: `${env}.py` } },
        rollout,
        reason: `issue 15: ${env}`,
      }),
    );
    await approver.ok(approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' }));
    return created.request.id;
  }

  const getReq = async (id: string) =>
    (await operator.ok(operator.get<{ request: Req }>(`/api/requests/${id}`))).request;

  const failure = (jobId: string) => ({
    type: 'result',
    jobId,
    seq: 1,
    at: new Date().toISOString(),
    result: {
      status: 'failed',
      errorCode: 'USER_EXCEPTION',
      message: 'boom',
      output: '',
      finishedAt: new Date().toISOString(),
    },
  });
  const success = (jobId: string) => ({
    type: 'result',
    jobId,
    seq: 1,
    at: new Date().toISOString(),
    result: { status: 'succeeded', output: `ok ${jobId}\n`, finishedAt: new Date().toISOString() },
  });

  test('maxFailures is exact at concurrency 1,000: nothing is sent after the result that reached it', async () => {
    const agents = await fleet('maxfail', 3, 400);
    const id = await approvedSelector('maxfail', { concurrency: 1000, maxFailures: 10 });
    const jobsOf = () => agents.reduce((n, a) => n + a.ta.jobs.length, 0);
    await eventually('the first wave of 1,000', () => jobsOf() >= 1000, 60_000);
    // Every job fails, all at once, from all three agents — and so does any job sent later (a refill before the
    // limit was committed is allowed; none after it).
    const reported = new Set<string>();
    const failNew = async () => {
      const acks = await Promise.all(
        agents.flatMap(({ ta }) =>
          ta.jobs
            .filter((j) => !reported.has(j.jobId) && reported.add(j.jobId))
            .map((j) => ta.raw('job:event', failure(j.jobId), 60_000)),
        ),
      );
      assert.ok(
        acks.every((a) => a.ok),
        JSON.stringify(acks.find((a) => !a.ok)),
      );
    };
    await failNew();
    const final = await eventually(
      'the request to end',
      async () => {
        await failNew();
        const r = await getReq(id);
        return r.state === 'failed' && r;
      },
      60_000,
      250,
    );
    assert.equal(final.executions!.length, 1200);
    const failed = final.executions!.filter((e) => e.state === 'failed').length;
    assert.ok(failed >= 10, `${failed} failed`);
    // The audit chain is the commit order of every send and every result.
    const events = await cp.db!.prisma.auditEvent.findMany({
      where: {
        action: { in: ['execution.send', 'execution.result'] },
        data: { path: ['requestId'], equals: id },
      },
      orderBy: { seq: 'asc' },
      select: { action: true },
    });
    let inFlight = 0,
      maxInFlight = 0,
      failures = 0,
      sentAfterLimit = 0;
    for (const e of events) {
      if (e.action === 'execution.send') {
        if (failures >= 10) sentAfterLimit++;
        maxInFlight = Math.max(maxInFlight, ++inFlight);
      } else {
        inFlight--;
        failures++;
      }
    }
    assert.equal(sentAfterLimit, 0, 'no job sent once 10 failures were committed');
    assert.ok(maxInFlight <= 1000, `at most 1,000 in flight (saw ${maxInFlight})`);
    const sent = events.filter((e) => e.action === 'execution.send').length;
    assert.equal(jobsOf(), sent, 'the agents received exactly what the audit says was sent');
    assert.ok(sent < 1200, `the rollout stopped (${sent} of 1,200 sent)`);
    const stopped = final.executions!.filter((e) => e.state === 'cancelled').length;
    assert.equal(stopped, 1200 - sent, 'the rest were stopped, never sent');
  });

  test('a control plane SIGKILLed mid-batch loses no acknowledged report and applies none twice', async () => {
    const [{ enrolled, ta }] = (await fleet('sigkill', 1, 300)) as [
      { enrolled: EnrolledAgent; ta: TestAgent },
    ];
    const id = await approvedSelector('sigkill', { concurrency: 300, maxFailures: 1 });
    await eventually('300 jobs', () => ta.jobs.length >= 300, 60_000);
    const jobIds = ta.jobs.map((j) => j.jobId);
    const acked: string[] = [];
    let killed = false;
    const sends = jobIds.map((jobId) =>
      ta.raw('job:event', success(jobId), 10_000).then(
        (a) => {
          if (a.ok && !killed) acked.push(jobId);
          if (a.ok && !killed) {
            // The first acknowledgement: later batches are still waiting or inside their transaction.
            killed = true;
            cp.proc.kill('SIGKILL');
          }
        },
        () => undefined,
      ),
    );
    await Promise.all(sends);
    assert.ok(killed, 'some report was acknowledged before the kill');
    await cp.restart();
    const db = cp.db!.prisma;
    // What was acknowledged is stored: an ack follows its batch's commit.
    const stored = await db.execution.findMany({ where: { jobId: { in: acked } }, select: { state: true } });
    assert.equal(stored.length, acked.length);
    assert.ok(stored.every((s) => s.state === 'succeeded'));
    const before = await db.execution.count({ where: { requestId: id, state: 'succeeded' } });
    assert.ok(before < 300, `the kill cut the batches short (${before} of 300 stored)`);
    // The agent reconnects and resends every report its outbox still holds — here all of them.
    const again = await TestAgent.connect(enrolled);
    open.push(again);
    const resent = await Promise.all(jobIds.map((j) => again.raw('job:event', success(j), 60_000)));
    assert.ok(
      resent.every((a) => a.ok),
      JSON.stringify(resent.find((a) => !a.ok)),
    );
    const final = await eventually('the request to succeed', async () => {
      const r = await getReq(id);
      return r.state === 'succeeded' && r;
    });
    assert.equal(final.executions!.filter((e) => e.state === 'succeeded').length, 300);
    const results = await db.auditEvent.groupBy({
      by: ['subjectId'],
      where: { action: 'execution.result', data: { path: ['requestId'], equals: id } },
      _count: { _all: true },
    });
    assert.equal(results.length, 300);
    assert.ok(
      results.every((r) => r._count._all === 1),
      'one result per execution',
    );
    assert.equal(
      await db.auditEvent.count({ where: { action: 'request.succeed', subjectId: id } }),
      1,
      'one end of the request',
    );
    const verify = await admin.ok(admin.get<{ valid: boolean }>('/api/audit/verify'));
    assert.equal(verify.valid, true, 'the chain holds');
  });
});
