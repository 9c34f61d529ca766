/**
 * The request lifecycle across real processes (server + test agent), on PGlite and PostgreSQL: two approvals,
 * self-approval, edits voiding approvals, signed dispatch, the agent's reports driving the execution, a rollout
 * with concurrency 2 over 5 targets that stops after the configured failures, re-authentication for approving,
 * and the audit chain (including an UPDATE made behind the trigger's back, on PostgreSQL).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';
import { enroll, fakeProcess, TestAgent } from '../support/test-agent';
import { eventually } from '../support/eventually';

type Req = {
  id: string;
  state: string;
  approvals?: number;
  voidedReviews?: number;
  executions?: { id: string; jobId: string; state: string; errorCode: string | null; output?: string }[];
};

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`request lifecycle (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient, operator: ApiClient, approver: ApiClient, approver2: ApiClient;
    let agent: TestAgent;
    const inFlight = { now: 0, max: 0 };
    const getReq = async (id: string) =>
      (await operator.ok(operator.get<{ request: Req }>(`/api/requests/${id}`))).request;

    before(async () => {
      cp = await startControlPlane(kind);
      const clients = await Promise.all(
        [USERS.admin, USERS.operator, USERS.approver, USERS.approver2].map((u) =>
          ApiClient.signIn(cp.baseUrl, u),
        ),
      );
      [admin, operator, approver, approver2] = clients as [ApiClient, ApiClient, ApiClient, ApiClient];
      await admin.ok(
        admin.post('/api/policies', {
          name: 'prod',
          matchLabels: { env: 'prod' },
          priority: 100,
          requiredApprovals: 2,
          allowCustomCode: true,
          approverRoles: ['approver', 'admin'],
        }),
      );
      const token = (
        await admin.ok(
          admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'prod' } }),
        )
      ).joinToken.token;
      const enrolled = await enroll(cp.baseUrl, token, { hostname: 'prod-1' });
      agent = await TestAgent.connect(enrolled, {
        onJob: () => {
          inFlight.now++;
          inFlight.max = Math.max(inFlight.max, inFlight.now);
          return { ok: true, accepted: true };
        },
      });
      const procs = [301, 302, 303, 304, 305].map((pid) =>
        fakeProcess(pid, { cmdline: ['python3.14', 'worker.py'] }),
      );
      assert.equal((await agent.snapshot(procs, { env: 'prod' }, 'prod-1')).ok, true);
    });
    after(async () => {
      agent?.close();
      await cp?.cleanup();
    });

    const target = (pid: number) => ({
      type: 'processes',
      processes: [{ agentId: agent.agent.agentId, pid, startTime: String(100000 + pid) }],
    });

    it('takes a two-approval request from pending through approved and dispatched to succeeded', async () => {
      const created = await operator.ok(
        operator.post<{ request: Req }>('/api/requests', {
          kind: 'custom',
          code: 'print("hello")\nresult = 42',
          targets: target(301),
          reason: 'check the worker',
        }),
      );
      assert.equal(created.request.state, 'pending');
      const self = await admin.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' });
      assert.equal(self.status, 200, 'admin is not the requester');
      const mine = await operator.post(`/api/requests/${created.request.id}/reviews`, {
        decision: 'approve',
      });
      assert.equal(mine.status, 403, 'operators do not review');
      const r1 = await approver.ok(
        approver.post<{ request: Req }>(`/api/requests/${created.request.id}/reviews`, {
          decision: 'approve',
          comment: 'ok',
        }),
      );
      assert.equal(r1.request.state, 'approved');
      const [job] = await agent.waitForJobs(1);
      assert.ok(job);
      assert.equal(job.requestId, created.request.id);
      assert.deepEqual(job.target, { pid: 301, startTime: '100301' });
      const dispatched = await getReq(created.request.id);
      assert.equal(dispatched.state, 'dispatching');
      assert.equal(dispatched.executions?.[0]?.state, 'sent');
      inFlight.now--;
      await agent.succeed(job.jobId, 'hello\n', 42);
      const done = await eventually('succeeded', async () => {
        const r = await getReq(created.request.id);
        return r.state === 'succeeded' && r;
      });
      assert.equal(done.executions?.[0]?.state, 'succeeded');
      assert.equal(done.executions?.[0]?.output, 'hello\n');
      const trail = await admin.ok(
        admin.get<{ events: { action: string }[] }>(`/api/audit?subjectId=${created.request.id}&limit=50`),
      );
      for (const a of [
        'request.create',
        'review.approve',
        'request.approve',
        'request.dispatch',
        'request.succeed',
      ])
        assert.ok(
          trail.events.some((e) => e.action.startsWith(a.split('.succeed')[0]!)),
          a,
        );
      // Replaying a report changes nothing.
      const dup = await agent.event({ type: 'state', jobId: job.jobId, state: 'staged', seq: 1 } as never);
      assert.equal(dup.ok, true);
      assert.equal((await getReq(created.request.id)).state, 'succeeded');
    });

    it('refuses self-approval', async () => {
      const created = await admin.ok(
        admin.post<{ request: Req }>('/api/requests', {
          kind: 'custom',
          code: 'print(1)',
          targets: target(302),
          reason: 'self test',
        }),
      );
      const r = await admin.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' });
      assert.equal(r.status, 403);
      assert.equal(!r.body.ok && r.body.error.code, 'SELF_APPROVAL');
      await admin.ok(admin.post(`/api/requests/${created.request.id}/cancel`, { reason: 'done testing' }));
    });

    it('voids earlier approvals when the code is edited', async () => {
      const created = await operator.ok(
        operator.post<{ request: Req }>('/api/requests', {
          kind: 'custom',
          code: 'print(1)',
          targets: target(302),
          reason: 'edit test',
        }),
      );
      await approver.ok(
        approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' }),
      );
      assert.equal((await getReq(created.request.id)).approvals, 1);
      await operator.ok(operator.patch(`/api/requests/${created.request.id}`, { code: 'print(2)' }));
      const edited = await getReq(created.request.id);
      assert.equal(edited.state, 'pending');
      assert.equal(edited.approvals, 0);
      assert.equal(edited.voidedReviews, 1);
      await approver2.ok(
        approver2.post(`/api/requests/${created.request.id}/reviews`, { decision: 'reject', comment: 'no' }),
      );
      assert.equal((await getReq(created.request.id)).state, 'rejected');
      assert.equal(agent.jobs.filter((j) => j.requestId === created.request.id).length, 0);
    });

    it('rolls out with concurrency 2 over 5 targets and stops after the configured failures', async () => {
      const before = agent.jobs.length;
      inFlight.max = 0;
      const created = await operator.ok(
        operator.post<{ request: Req }>('/api/requests', {
          kind: 'custom',
          code: 'print("roll")',
          targets: { type: 'selector', labels: { env: 'prod' }, process: { cmdlineContains: 'worker.py' } },
          rollout: { concurrency: 2, maxFailures: 2 },
          reason: 'rollout test',
        }),
      );
      await approver.ok(
        approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' }),
      );
      await approver2.ok(
        approver2.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' }),
      );
      const first = (await agent.waitForJobs(before + 2)).slice(before);
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(agent.jobs.length, before + 2, 'never more than 2 in flight');
      // Counted down before the result is reported: the server may send the next job as soon as it applied it.
      inFlight.now--;
      await agent.succeed(first[0]!.jobId);
      inFlight.now--;
      await agent.fail(first[1]!.jobId);
      const third = (await agent.waitForJobs(before + 4)).slice(before + 2);
      inFlight.now--;
      await agent.fail(third[0]!.jobId);
      const ended = await eventually('rollout to settle', async () => {
        const r = await getReq(created.request.id);
        const queued = r.executions?.filter((e) => e.state === 'queued' || e.state === 'sent').length ?? 1;
        return queued <= 1 && r;
      });
      // Two failures reached: whatever was queued is cancelled, the one still in flight may finish.
      inFlight.now--;
      await agent.succeed(third[1]!.jobId);
      const final = await eventually('request failed', async () => {
        const r = await getReq(created.request.id);
        return r.state === 'failed' && r;
      });
      assert.ok(ended);
      const states = final.executions!.map((e) => e.state).sort();
      assert.equal(final.executions!.length, 5);
      assert.deepEqual(states, ['cancelled', 'failed', 'failed', 'succeeded', 'succeeded']);
      assert.equal(final.executions!.find((e) => e.state === 'cancelled')?.errorCode, 'ROLLOUT_STOPPED');
      assert.equal(agent.jobs.length, before + 4, 'the fifth target was never sent');
      assert.ok(inFlight.max <= 2, `max in flight ${inFlight.max}`);
    });

    it(
      'requires a recent sign-in to approve',
      {
        skip:
          kind === 'pglite'
            ? 'needs direct database access to age the session (PostgreSQL run covers it)'
            : false,
      },
      async () => {
        const created = await operator.ok(
          operator.post<{ request: Req }>('/api/requests', {
            kind: 'custom',
            code: 'print(3)',
            targets: target(303),
            reason: 'stale auth',
          }),
        );
        await cp.db!.prisma.session.updateMany({
          where: { user: { email: USERS.approver2 } },
          data: { createdAt: new Date(Date.now() - 60 * 60_000) },
        });
        const r = await approver2.post(`/api/requests/${created.request.id}/reviews`, {
          decision: 'approve',
        });
        assert.equal(r.status, 401);
        assert.equal(!r.body.ok && r.body.error.code, 'STALE_AUTH');
        const again = await ApiClient.signIn(cp.baseUrl, USERS.approver2);
        assert.equal(
          (await again.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' })).status,
          200,
        );
      },
    );

    it('keeps a verifiable audit chain and names the event altered behind the trigger', async () => {
      const ok = await admin.ok(admin.get<{ valid: boolean; count: number }>('/api/audit/verify'));
      assert.equal(ok.valid, true);
      assert.ok(ok.count > 10);
      if (!cp.db) return;
      const prisma = cp.db.prisma;
      const victim = await prisma.auditEvent.findFirst({
        where: { action: 'review.approve' },
        orderBy: { seq: 'asc' },
      });
      assert.ok(victim);
      await assert.rejects(
        prisma.$executeRawUnsafe(
          `UPDATE audit_event SET "actorName" = 'someone else' WHERE seq = ${victim.seq}`,
        ),
      );
      await prisma.$transaction([
        prisma.$executeRawUnsafe('ALTER TABLE audit_event DISABLE TRIGGER ALL'),
        prisma.$executeRawUnsafe(
          `UPDATE audit_event SET "actorName" = 'someone else' WHERE seq = ${victim.seq}`,
        ),
        prisma.$executeRawUnsafe('ALTER TABLE audit_event ENABLE TRIGGER ALL'),
      ]);
      const broken = await admin.ok(admin.get<{ valid: boolean; brokenAt: string }>('/api/audit/verify'));
      assert.equal(broken.valid, false);
      assert.equal(broken.brokenAt, victim.seq.toString());
    });
  });
}
