import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { verifyAnyJob, verifyJob } from '@pyreach/protocol/job';
import { verifyAuditChain } from './audit';
import * as dispatch from './dispatch';
import type { Outcome } from './effects';
import { AppError } from './errors';
import * as executions from './executions';
import { resolvePolicy } from './policy';
import * as requests from './requests';
import { getRequest } from './requests';
import { loadOrCreateSigningKey } from './signing';
import { setRole } from './users';
import {
  testKeyPair,
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  seedPolicy,
} from '../../../../../test/support/services';
import { getScript } from '@pyreach/scripts';

// These tests are about results and rows; what each call changed (its effects) is tested in effects.int.test.ts.
const resultOf =
  <A extends unknown[], T>(f: (...a: A) => Promise<Outcome<T>>) =>
  async (...a: A): Promise<T> =>
    (await f(...a)).result;
const createRequest = resultOf(requests.createRequest);
const updateRequest = resultOf(requests.updateRequest);
const reviewRequest = resultOf(requests.reviewRequest);
const cancelRequest = resultOf(requests.cancelRequest);
const planExecutions = resultOf(dispatch.planExecutions);
const sendWave = resultOf(dispatch.sendWave);
const applyJobEvent = resultOf(executions.applyJobEvent);
const recordDispatchRefusal = resultOf(executions.recordDispatchRefusal);
const markAgentLost = resultOf(executions.markAgentLost);
const expireOverdue = resultOf(executions.expireOverdue);
const { buildEnvelope } = dispatch;

const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const ATTEST = testKeyPair();
const fresh = () => ({ authenticatedAt: new Date(), attestation: ATTEST });
const result = (jobId: string, seq: number, status: 'succeeded' | 'failed') => ({
  type: 'result' as const,
  jobId,
  seq,
  at: new Date().toISOString(),
  result: {
    status,
    output: 'hi\n',
    ...(status === 'failed' ? { errorCode: 'USER_EXCEPTION' as const, message: 'boom' } : { result: 42 }),
  },
});

describeEachDatabase('requests, approvals, dispatch and executions', (db) => {
  async function world(labels: Record<string, string>, n = 1) {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, {
      labels,
      processes: Array.from({ length: n }, (_, i) => pyProcess(100 + i)),
    });
    const targets = {
      type: 'processes' as const,
      processes: Array.from({ length: n }, (_, i) => ({
        agentId: agent.id,
        pid: 100 + i,
        startTime: String(1100 + i),
      })),
    };
    return {
      prisma,
      admin,
      agent,
      targets,
      op: await seedUser(prisma, 'operator'),
      ap1: await seedUser(prisma, 'approver'),
      ap2: await seedUser(prisma, 'approver'),
    };
  }

  test('a request needing two approvals goes pending → approved → dispatched → succeeded from the agent’s reports', async () => {
    const w = await world({ env: 'two' });
    await seedPolicy(
      w.prisma,
      {
        name: `two-${w.agent.id}`,
        matchLabels: { env: 'two' },
        priority: 10,
        requiredApprovals: 2,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print("hi")',
        targets: w.targets,
        reason: 'check the cache',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(req.state, 'pending');
    assert.equal(req.requiredApprovals, 2);
    assert.equal(
      (await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh())).state,
      'pending',
    );
    const approved = await reviewRequest(w.prisma, w.ap2, req.id, { decision: 'approve' }, fresh());
    assert.equal(approved.state, 'approved');
    assert.ok(approved.approvalExpiresAt! > new Date());
    const [ex] = await planExecutions(w.prisma, req.id);
    await assert.rejects(planExecutions(w.prisma, req.id), code('INVALID_STATE'), 'planned once');
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const [job] = await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true);
    const reqRow = await w.prisma.injectionRequest.findUniqueOrThrow({ where: { id: req.id } });
    const env = buildEnvelope(job!.execution, reqRow, keys);
    assert.equal(verifyJob(job!.envelope, keys.publicKey).ok, true);
    assert.equal(verifyJob(env, keys.publicKey).ok, true);
    assert.equal(env.payload.jobId, ex!.jobId);
    const sent = verifyAnyJob(job!.envelope, keys.publicKey);
    assert.equal(sent.ok && sent.payload.jobId, ex!.jobId);
    assert.deepEqual(
      await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true),
      [],
      'a job id is sent at most once',
    );
    const at = new Date().toISOString();
    assert.equal(
      await applyJobEvent(w.prisma, w.agent.id, {
        type: 'state',
        jobId: ex!.jobId,
        seq: 1,
        at,
        state: 'picked_up',
      }),
      'applied',
    );
    assert.equal(
      await applyJobEvent(w.prisma, w.agent.id, {
        type: 'state',
        jobId: ex!.jobId,
        seq: 1,
        at,
        state: 'picked_up',
      }),
      'duplicate',
    );
    await assert.rejects(
      applyJobEvent(w.prisma, w.agent.id, { type: 'output', jobId: ex!.jobId, seq: 5, at, chunk: 'x' }),
      (e: unknown) =>
        code('OUT_OF_ORDER')(e) && (e as Error).message === `expected seq 2 for job ${ex!.jobId}, got 5`,
    );
    const other = await seedAgent(w.prisma, w.admin);
    await assert.rejects(
      applyJobEvent(w.prisma, other.id, result(ex!.jobId, 2, 'succeeded')),
      code('FORBIDDEN'),
    );
    assert.equal(await applyJobEvent(w.prisma, w.agent.id, result(ex!.jobId, 2, 'succeeded')), 'applied');
    const done = await getRequest(w.prisma, req.id);
    assert.equal(done.state, 'succeeded');
    assert.deepEqual(
      done.executions.map((e) => e.state),
      ['succeeded'],
    );
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('the requester can never approve their own request, and a stale sign-in cannot review', async () => {
    const w = await world({ env: 'self' });
    const boss = await seedUser(w.prisma, 'admin');
    const req = await createRequest(
      w.prisma,
      boss,
      {
        kind: 'custom',
        code: 'x=1',
        targets: w.targets,
        reason: 'admin asks',
      },
      new Date(),
      ATTEST,
    );
    await assert.rejects(
      reviewRequest(w.prisma, boss, req.id, { decision: 'approve' }, fresh()),
      code('SELF_APPROVAL'),
    );
    await assert.rejects(
      reviewRequest(
        w.prisma,
        w.ap1,
        req.id,
        { decision: 'approve' },
        { authenticatedAt: new Date(Date.now() - 6 * 60_000), attestation: ATTEST },
      ),
      code('STALE_AUTH'),
    );
    await assert.rejects(
      reviewRequest(w.prisma, w.op, req.id, { decision: 'approve' }, fresh()),
      code('FORBIDDEN'),
    );
    await assert.rejects(
      createRequest(
        w.prisma,
        await seedUser(w.prisma, 'viewer'),
        {
          kind: 'custom',
          code: 'x',
          targets: w.targets,
          reason: 'nope',
        },
        new Date(),
        ATTEST,
      ),
      code('FORBIDDEN'),
    );
  });

  test('one vote per reviewer per revision; an edit voids earlier approvals', async () => {
    const w = await world({ env: 'edit' });
    await seedPolicy(
      w.prisma,
      {
        name: `edit-${w.agent.id}`,
        matchLabels: { env: 'edit' },
        priority: 10,
        requiredApprovals: 2,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: w.targets,
        reason: 'first',
      },
      new Date(),
      ATTEST,
    );
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    await assert.rejects(
      reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh()),
      code('ALREADY_VOTED'),
    );
    await assert.rejects(
      updateRequest(w.prisma, w.ap1, req.id, { code: 'print(2)' }, new Date(), ATTEST),
      code('FORBIDDEN'),
    );
    const edited = await updateRequest(w.prisma, w.op, req.id, { code: 'print(2)' }, new Date(), ATTEST);
    assert.equal(edited.revision, 2);
    assert.notEqual(edited.contentHash, req.contentHash);
    const detail = await getRequest(w.prisma, req.id);
    assert.equal(detail.approvals, 0);
    assert.equal(detail.voidedReviews, 1);
    assert.equal(
      (await reviewRequest(w.prisma, w.ap2, req.id, { decision: 'approve' }, fresh())).state,
      'pending',
      'ap1’s old vote no longer counts',
    );
    assert.equal(
      (await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh())).state,
      'approved',
      'ap1 may vote on the new revision',
    );
  });

  test('a rejection ends the request and it cannot be dispatched', async () => {
    const w = await world({ env: 'rej' });
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'try',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(
      (await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'reject', comment: 'no' }, fresh())).state,
      'rejected',
    );
    await assert.rejects(
      reviewRequest(w.prisma, w.ap2, req.id, { decision: 'approve' }, fresh()),
      code('INVALID_STATE'),
    );
    await assert.rejects(planExecutions(w.prisma, req.id), code('INVALID_STATE'));
  });

  test('custom code is refused where a policy forbids it; 0 approvals approves at once; the strictest policy wins', async () => {
    const w = await world({ env: 'prodx' });
    await seedPolicy(
      w.prisma,
      {
        name: `lib-${w.agent.id}`,
        matchLabels: { env: 'prodx' },
        priority: 50,
        requiredApprovals: 0,
        allowCustomCode: false,
        approvalValidMinutes: 10,
      },
      ATTEST,
    );
    await assert.rejects(
      createRequest(
        w.prisma,
        w.op,
        {
          kind: 'custom',
          code: 'x',
          targets: w.targets,
          reason: 'routine check',
        },
        new Date(),
        ATTEST,
      ),
      code('POLICY_DENIED'),
    );
    await assert.rejects(
      createRequest(
        w.prisma,
        w.op,
        {
          kind: 'library',
          scriptId: 'gc.stats',
          code: 'import os; os.system("id")',
          targets: w.targets,
          reason: 'stats',
        },
        new Date(),
        ATTEST,
      ),
      (e: unknown) => code('VALIDATION')(e) && /send kind "custom"/.test((e as AppError).userMessage),
      'custom code dressed up as a library script is refused',
    );
    const lib = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'library',
        scriptId: 'gc.stats',
        code: getScript('gc.stats')!.source,
        targets: w.targets,
        reason: 'stats',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(lib.state, 'approved');
    assert.deepEqual(lib.params, { top: 20 }, 'defaults are filled in from the script schema');
    const eff = await resolvePolicy(w.prisma, ATTEST, [{ env: 'prodx' }, { env: 'other' }]);
    assert.equal(eff.requiredApprovals, 1);
    assert.equal(eff.allowCustomCode, false);
    assert.equal(eff.approvalValidMinutes, 10);
  });

  test('library parameters are validated against the script schema on create and on edit', async () => {
    const w = await world({ env: 'libp' });
    const source = getScript('logging.set_level')!.source;
    await assert.rejects(
      createRequest(
        w.prisma,
        w.op,
        {
          kind: 'library',
          scriptId: 'logging.set_level',
          code: source,
          params: { level: 'LOUD' },
          targets: w.targets,
          reason: 'debug',
        },
        new Date(),
        ATTEST,
      ),
      (e: unknown) => code('VALIDATION')(e) && /level/.test((e as AppError).userMessage),
    );
    await assert.rejects(
      createRequest(
        w.prisma,
        w.op,
        {
          kind: 'library',
          scriptId: 'no.such',
          code: source,
          targets: w.targets,
          reason: 'debug',
        },
        new Date(),
        ATTEST,
      ),
      code('VALIDATION'),
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'library',
        scriptId: 'logging.set_level',
        code: source,
        params: { logger: 'app', level: 'DEBUG' },
        targets: w.targets,
        reason: 'debug',
      },
      new Date(),
      ATTEST,
    );
    assert.deepEqual(req.params, {
      logger: 'app',
      level: 'DEBUG',
      adjustHandlers: true,
      durationSeconds: 600,
      mode: 'set',
      // A change that undoes itself is named by its request, in the hash (the follow-ups find it by it).
      restoreToken: req.id,
    });
    await assert.rejects(
      updateRequest(w.prisma, w.op, req.id, { params: { level: 'LOUD' } }, new Date(), ATTEST),
      code('VALIDATION'),
    );
    await assert.rejects(
      updateRequest(w.prisma, w.op, req.id, { code: 'print(1)' }, new Date(), ATTEST),
      code('VALIDATION'),
    );
    const edited = await updateRequest(
      w.prisma,
      w.op,
      req.id,
      { params: { logger: 'app', level: 'INFO' } },
      new Date(),
      ATTEST,
    );
    assert.equal(edited.code, source);
    assert.deepEqual(edited.params, {
      logger: 'app',
      level: 'INFO',
      adjustHandlers: true,
      durationSeconds: 600,
      mode: 'set',
      restoreToken: req.id,
    });
    assert.equal(edited.revision, req.revision + 1);
  });

  test('a refusal in the dispatch ack is audited and ends the job refused; a missing ack decides nothing', async () => {
    const w = await world({ env: 'ack' }, 2);
    await seedPolicy(
      w.prisma,
      {
        name: `ack-${w.agent.id}`,
        matchLabels: { env: 'ack' },
        priority: 10,
        requiredApprovals: 0,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'ack',
        rollout: { concurrency: 2, maxFailures: 5 },
      },
      new Date(),
      ATTEST,
    );
    // No one alone: a 0-approval policy still needs a second person for custom code.
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    await planExecutions(w.prisma, req.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const [a, b] = (await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true)).map(
      (j) => j.execution,
    );

    const other = await seedAgent(w.prisma, w.admin);
    assert.equal(
      await recordDispatchRefusal(w.prisma, other.id, a!.jobId, { code: 'BAD_SIGNATURE', message: 'x' }),
      null,
      'only the addressee speaks for a job',
    );

    const refused = await recordDispatchRefusal(w.prisma, w.agent.id, a!.jobId, {
      code: 'BAD_SIGNATURE',
      message: 'job signature does not verify against the pinned control-plane key',
    });
    assert.equal(refused?.state, 'refused');
    assert.equal(refused?.errorCode, 'BAD_SIGNATURE');
    assert.equal(
      await recordDispatchRefusal(w.prisma, w.agent.id, b!.jobId, {
        code: 'ACK_TIMEOUT',
        message: 'no answer',
      }),
      null,
    );
    assert.equal(
      (await w.prisma.execution.findUniqueOrThrow({ where: { jobId: b!.jobId } })).state,
      'sent',
      'a missing ack decides nothing',
    );

    const events = await w.prisma.auditEvent.findMany({
      where: { subjectType: 'execution', subjectId: { in: [a!.id, b!.id] } },
      orderBy: { seq: 'asc' },
    });
    const byAction = events.map((e) => [e.action, e.actorType, (e.data as { code?: string }).code]);
    assert.deepEqual(
      byAction.filter(([act]) => act === 'execution.refuse'),
      [['execution.refuse', 'agent', 'BAD_SIGNATURE']],
    );
    assert.deepEqual(
      byAction.filter(([act]) => act === 'execution.dispatch_unacknowledged'),
      [['execution.dispatch_unacknowledged', 'agent', 'ACK_TIMEOUT']],
    );
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
    // The agent's own report still settles the unacknowledged job (and leaves nothing in flight for later tests).
    assert.equal(await applyJobEvent(w.prisma, w.agent.id, result(b!.jobId, 1, 'succeeded')), 'applied');
  });

  test('a rollout with concurrency 2 over 5 targets stops after the configured failures', async () => {
    const w = await world({ env: 'roll' }, 5);
    await seedPolicy(
      w.prisma,
      {
        name: `roll-${w.agent.id}`,
        matchLabels: { env: 'roll' },
        priority: 10,
        requiredApprovals: 0,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'roll',
        rollout: { concurrency: 2, maxFailures: 2 },
      },
      new Date(),
      ATTEST,
    );
    // No one alone: a 0-approval policy still needs a second person for custom code.
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    await planExecutions(w.prisma, req.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const send = async () =>
      (await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true)).map(
        (j) => j.execution,
      );
    const first = await send();
    assert.equal(first.length, 2);
    assert.equal((await send()).length, 0, 'no room while two are in flight');
    await applyJobEvent(w.prisma, w.agent.id, result(first[0]!.jobId, 1, 'failed'));
    const second = await send();
    assert.equal(second.length, 1);
    await applyJobEvent(w.prisma, w.agent.id, result(first[1]!.jobId, 1, 'failed'));
    assert.deepEqual(await send(), [], 'stopped after 2 failures');
    await applyJobEvent(w.prisma, w.agent.id, result(second[0]!.jobId, 1, 'succeeded'));
    const detail = await getRequest(w.prisma, req.id);
    assert.equal(detail.state, 'failed');
    assert.deepEqual(detail.executions.map((e) => e.state).sort(), [
      'cancelled',
      'cancelled',
      'failed',
      'failed',
      'succeeded',
    ]);
  });

  test('a wave is claimed in one transaction: within the rollout limit, only addressable agents, each job once, each send audited', async () => {
    const w = await world({ env: 'wave' }, 5);
    await seedPolicy(
      w.prisma,
      {
        name: `wave-${w.agent.id}`,
        matchLabels: { env: 'wave' },
        priority: 10,
        requiredApprovals: 0,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'wave',
        rollout: { concurrency: 3, maxFailures: 1 },
      },
      new Date(),
      ATTEST,
    );
    // No one alone: a 0-approval policy still needs a second person for custom code.
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    await planExecutions(w.prisma, req.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    assert.deepEqual(
      await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => false),
      [],
      'nothing for agents connected elsewhere',
    );
    // Two passes at once (two replicas, or a pass and a wake-up) claim each job once between them.
    const [x, y] = await Promise.all([
      sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, (id) => id === w.agent.id),
      sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, (id) => id === w.agent.id),
    ]);
    const first = [...x!, ...y!];
    assert.equal(first.length, 3);
    assert.equal(new Set(first.map((j) => j.execution.jobId)).size, 3, 'a job id is sent at most once');
    for (const j of first) {
      const v = verifyAnyJob(j.envelope, keys.publicKey);
      assert.equal(v.ok && v.payload.jobId, j.execution.jobId);
    }
    assert.deepEqual(
      await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true),
      [],
      'no room while three are in flight',
    );
    const sends = await w.prisma.auditEvent.findMany({
      where: { action: 'execution.send', subjectId: { in: first.map((j) => j.execution.id) } },
    });
    assert.equal(sends.length, 3, 'one audit event per claimed execution');
    await applyJobEvent(w.prisma, w.agent.id, result(first[0]!.execution.jobId, 1, 'succeeded'));
    const second = await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true);
    assert.equal(second.length, 1, 'a finished job frees one slot');
    await applyJobEvent(w.prisma, w.agent.id, result(first[1]!.execution.jobId, 1, 'failed'));
    assert.deepEqual(
      await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true),
      [],
      'stopped after 1 failure',
    );
    for (const j of [first[2]!, second[0]!])
      await applyJobEvent(w.prisma, w.agent.id, result(j.execution.jobId, 1, 'succeeded'));
    const detail = await getRequest(w.prisma, req.id);
    assert.equal(detail.state, 'failed');
    assert.deepEqual(detail.executions.map((e) => e.state).sort(), [
      'cancelled',
      'failed',
      'succeeded',
      'succeeded',
      'succeeded',
    ]);
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('eight wave passes at once never send past the rollout concurrency, round after round', async () => {
    const w = await world({ env: 'waves' }, 30);
    await seedPolicy(
      w.prisma,
      {
        name: `waves-${w.agent.id}`,
        matchLabels: { env: 'waves' },
        priority: 10,
        requiredApprovals: 0,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'racing waves',
        rollout: { concurrency: 3, maxFailures: 30 },
      },
      new Date(),
      ATTEST,
    );
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    await planExecutions(w.prisma, req.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const pass = () => sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true);
    for (let round = 0; round < 10; round++) {
      const sent = (await Promise.all(Array.from({ length: 8 }, pass))).flat();
      assert.equal(sent.length, 3, `round ${round}: exactly the concurrency, between all passes`);
      for (const j of sent)
        await applyJobEvent(w.prisma, w.agent.id, result(j.execution.jobId, 1, 'succeeded'));
    }
    assert.equal((await getRequest(w.prisma, req.id)).state, 'succeeded');
  });

  test('an approval that expired before dispatch expires the request; lost agents and overdue jobs end honestly', async () => {
    const w = await world({ env: 'exp' }, 2);
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'late',
      },
      new Date(),
      ATTEST,
    );
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    assert.deepEqual(
      await planExecutions(w.prisma, req.id, undefined, new Date(Date.now() + 2 * 3600_000)),
      [],
    );
    assert.equal((await getRequest(w.prisma, req.id)).state, 'expired');

    const req2 = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'y',
        targets: w.targets,
        reason: 'lost',
        rollout: { concurrency: 2, maxFailures: 5 },
      },
      new Date(),
      ATTEST,
    );
    await reviewRequest(w.prisma, w.ap1, req2.id, { decision: 'approve' }, fresh());
    await planExecutions(w.prisma, req2.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const [a, b] = (
      await sendWave(w.prisma, req2.id, { signing: keys, attestation: ATTEST }, () => true)
    ).map((j) => j.execution);
    assert.ok(b, 'both jobs of the wave went out');
    await applyJobEvent(w.prisma, w.agent.id, {
      type: 'state',
      jobId: a!.jobId,
      seq: 1,
      at: new Date().toISOString(),
      state: 'picked_up',
    });
    assert.equal(
      (await expireOverdue(w.prisma, new Date(Date.now() + 3600_000 * 0.5))).executions,
      1,
      'only the never-picked-up job expires',
    );
    const lost = await markAgentLost(w.prisma, w.agent.id);
    assert.deepEqual(
      lost.map((e) => e.id),
      [a!.id],
    );
    assert.equal((await getRequest(w.prisma, req2.id)).state, 'failed');
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('requests are cancelled by their requester or an admin only', async () => {
    const w = await world({ env: 'cancel' });
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'x',
        targets: w.targets,
        reason: 'routine check',
      },
      new Date(),
      ATTEST,
    );
    await assert.rejects(
      cancelRequest(w.prisma, await seedUser(w.prisma, 'operator'), req.id),
      code('FORBIDDEN'),
    );
    assert.equal((await cancelRequest(w.prisma, w.admin, req.id)).state, 'cancelled');
    await assert.rejects(cancelRequest(w.prisma, w.op, req.id), code('INVALID_STATE'));
  });

  test('only an admin sets roles and the last admin cannot be demoted', async () => {
    const { prisma } = db();
    await prisma.$executeRawUnsafe(`UPDATE "user" SET role = 'viewer' WHERE role = 'admin'`);
    const admin = await seedUser(prisma, 'admin');
    const op = await seedUser(prisma, 'operator');
    await assert.rejects(setRole(prisma, op, op.id, 'admin', ATTEST), code('FORBIDDEN'));
    await assert.rejects(setRole(prisma, admin, admin.id, 'viewer', ATTEST), code('CONFLICT'));
    await assert.rejects(setRole(prisma, admin, op.id, 'root', ATTEST), code('VALIDATION'));
    // The only admin: promotions take effect, recorded unconfirmed (governance.int.test.ts has the rest).
    const promoted = await setRole(prisma, admin, op.id, 'approver', ATTEST);
    assert.equal(promoted.user.role, 'approver');
    assert.equal(promoted.change?.state, 'unconfirmed');
    await setRole(prisma, admin, op.id, 'admin', ATTEST);
    assert.equal((await setRole(prisma, admin, admin.id, 'viewer', ATTEST)).user.role, 'viewer');
  });
});
