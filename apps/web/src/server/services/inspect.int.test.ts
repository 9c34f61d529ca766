import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JobEvent } from '@pyreach/protocol/agent';
import { verifyAnyJob } from '@pyreach/protocol/job';
import { markConnected, markDisconnected, revokeAgent } from './agents';
import { AppError } from './errors';
import {
  claimInspections,
  expireInspections,
  inspectionDispatchRefused,
  inspectionView,
  INSPECT_JOB_TTL_MS,
  MAX_INSPECTION_RESULT_BYTES,
  recordInspectionEvent,
  startInspection,
} from './inspect';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  testKeys,
} from '../../../../../test/support/services';

describeEachDatabase('process:inspect (sign an inspection job, audited, no approval)', (db) => {
  const keys = testKeys();
  const v2 = { signing: keys.signing, agentVersionOf: () => 2 as const };
  const fleet = async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { processes: [pyProcess(4242)] });
    await markConnected(prisma, agent.id);
    const proc = await prisma.pythonProcess.findFirstOrThrow({
      where: { pid: 4242, host: { agentId: agent.id } },
    });
    return { prisma, agent, proc };
  };

  test('an operator inspects without approval: a signed v2 inspect job for that process, audited', async () => {
    const { prisma, agent, proc } = await fleet();
    const op = await seedUser(prisma, 'operator');
    const body = { agentId: agent.id, pid: 4242, startTime: proc.startTime, what: 'stacks' as const };
    const { result } = await startInspection(prisma, op, body, v2);
    const check = verifyAnyJob(result.envelope, keys.signing.publicKey);
    assert.ok(check.ok, JSON.stringify(check));
    assert.equal(check.version, 2);
    assert.equal(check.payload.action, 'inspect');
    assert.equal(check.payload.action === 'inspect' && check.payload.what, 'stacks');
    assert.deepEqual(check.payload.target, { pid: 4242, startTime: proc.startTime });
    assert.deepEqual(check.payload.approvals, []);
    const [ev] = await prisma.auditEvent.findMany({
      where: { action: 'process.inspect', subjectId: proc.id },
    });
    assert.ok(ev, 'audited');
    assert.equal(ev.actorId, op.id);
    assert.deepEqual(
      { ...(ev.data as object) },
      { jobId: result.jobId, agentId: agent.id, pid: 4242, startTime: proc.startTime, what: 'stacks' },
    );
  });

  test('a viewer is refused FORBIDDEN, nothing signed or audited', async () => {
    const { prisma, agent, proc } = await fleet();
    const viewer = await seedUser(prisma, 'viewer');
    const body = { agentId: agent.id, pid: 4242, startTime: proc.startTime, what: 'tasks' as const };
    await assert.rejects(
      startInspection(prisma, viewer, body, v2),
      (e: unknown) => e instanceof AppError && e.code === 'FORBIDDEN',
    );
    assert.equal(
      await prisma.auditEvent.count({ where: { action: 'process.inspect', subjectId: proc.id } }),
      0,
    );
  });

  test('an agent that speaks only job protocol v1 is refused with "upgrade the agent"', async () => {
    const { prisma, agent, proc } = await fleet();
    const op = await seedUser(prisma, 'operator');
    const body = { agentId: agent.id, pid: 4242, startTime: proc.startTime, what: 'stacks' as const };
    await assert.rejects(
      startInspection(prisma, op, body, { signing: keys.signing, agentVersionOf: () => 1 as const }),
      (e: unknown) =>
        e instanceof AppError &&
        e.code === 'UNSUPPORTED_VERSION' &&
        /upgrade the agent/.test(e.userMessage ?? ''),
    );
  });

  test('a process the agent does not report (or a reused pid) is NOT_FOUND', async () => {
    const { prisma, agent } = await fleet();
    const op = await seedUser(prisma, 'operator');
    await assert.rejects(
      startInspection(prisma, op, { agentId: agent.id, pid: 4242, startTime: '1', what: 'stacks' }, v2),
      (e: unknown) => e instanceof AppError && e.code === 'NOT_FOUND',
    );
  });

  /** An operator's inspection of pid 4242, started (queued) and claimed (sent) for the agent connected here. */
  const sent = async (what: 'stacks' | 'tasks' = 'stacks') => {
    const f = await fleet();
    const op = await seedUser(f.prisma, 'operator');
    const body = { agentId: f.agent.id, pid: 4242, startTime: f.proc.startTime, what };
    const started = await startInspection(f.prisma, op, body, v2);
    const claimed = await claimInspections(f.prisma, [f.agent.id], () => 2);
    return { ...f, op, jobId: started.result.jobId, started, claimed };
  };
  /** The agent's result event for an inspection, parsed with the wire schema (as the gateway does). */
  const report = (jobId: string, result: unknown, status: 'succeeded' | 'failed' = 'succeeded') =>
    JobEvent.parse({
      type: 'result',
      jobId,
      seq: 2,
      at: new Date().toISOString(),
      result: { status, output: '', result, durationMs: 3 },
    });
  const thread = (name: string) => ({
    tid: 7,
    hostTid: 7,
    name,
    main: true,
    interpreterId: 0,
    holdsGil: null,
    state: null,
    frames: [{ function: 'main', file: 'app.py', line: 3 }],
    truncated: false,
    error: null,
  });
  const stacksOf = (name: string) => ({
    pid: 4242,
    nsPid: 4242,
    pythonVersion: '3.14.10',
    status: 'complete',
    readAt: new Date().toISOString(),
    durationMs: 1,
    bytesRead: 100,
    errors: [],
    remoteDebugEnabled: true,
    interpreters: [{ id: 0, threads: 1, remoteDebugEnabled: true }],
    threads: [thread(name)],
  });
  const stacks = stacksOf('MainThread');

  test('an inspection for an agent connected elsewhere waits queued; the replica holding it claims it once', async () => {
    const f = await fleet();
    const op = await seedUser(f.prisma, 'operator');
    const body = { agentId: f.agent.id, pid: 4242, startTime: f.proc.startTime, what: 'stacks' as const };
    const started = await startInspection(f.prisma, op, body, {
      signing: keys.signing,
      agentVersionOf: () => null,
    });
    assert.deepEqual(started.effects, [
      { kind: 'inspection', inspectionId: started.result.jobId, state: 'queued' },
      { kind: 'wake', why: 'inspect' },
    ]);
    assert.equal((await claimInspections(f.prisma, ['agt_other'], () => 2)).result.length, 0);
    const [a, b] = await Promise.all([
      claimInspections(f.prisma, [f.agent.id], () => 2),
      claimInspections(f.prisma, [f.agent.id], () => 2),
    ]);
    assert.equal(a.result.length + b.result.length, 1, 'exactly one replica claims it');
    const job = [...a.result, ...b.result][0]!;
    assert.equal(job.jobId, started.result.jobId);
    assert.deepEqual(job.envelope, started.result.envelope, 'the job signed at the request is the one sent');
    assert.equal((await inspectionView(f.prisma, op, job.jobId)).state, 'sent');
  });

  test('an offline or revoked agent is refused at once (AGENT_OFFLINE), nothing queued', async () => {
    const f = await fleet();
    const op = await seedUser(f.prisma, 'operator');
    const body = { agentId: f.agent.id, pid: 4242, startTime: f.proc.startTime, what: 'stacks' as const };
    await markDisconnected(f.prisma, f.agent.id);
    await assert.rejects(
      startInspection(f.prisma, op, body, v2),
      (e: unknown) =>
        e instanceof AppError && e.code === 'AGENT_OFFLINE' && /offline/.test(e.userMessage ?? ''),
    );
    await markConnected(f.prisma, f.agent.id);
    const admin = await seedUser(f.prisma, 'admin', 'admin2');
    await revokeAgent(f.prisma, admin, f.agent.id, 'test');
    await assert.rejects(
      startInspection(f.prisma, op, body, v2),
      (e: unknown) =>
        e instanceof AppError && e.code === 'AGENT_OFFLINE' && /revoked/.test(e.userMessage ?? ''),
    );
    assert.equal(await f.prisma.processInspection.count({ where: { agentId: f.agent.id } }), 0);
  });

  test('a v1 agent discovered at the claim: the inspection ends refused naming the upgrade, nothing sent', async () => {
    const f = await fleet();
    const op = await seedUser(f.prisma, 'operator');
    const body = { agentId: f.agent.id, pid: 4242, startTime: f.proc.startTime, what: 'stacks' as const };
    const started = await startInspection(f.prisma, op, body, {
      signing: keys.signing,
      agentVersionOf: () => null,
    });
    const claimed = await claimInspections(f.prisma, [f.agent.id], () => 1);
    assert.deepEqual(claimed.result, []);
    const v = await inspectionView(f.prisma, op, started.result.jobId);
    assert.equal(v.state, 'refused');
    assert.equal(v.errorCode, 'UNSUPPORTED_VERSION');
  });

  test("the addressed agent's report is stored once: another agent's, and a second one, change nothing", async () => {
    const f = await sent();
    const admin = await seedUser(f.prisma, 'admin', 'admin3');
    const other = await seedAgent(f.prisma, admin, { processes: [pyProcess(4242)] });
    const forged = stacksOf('forged');
    assert.equal((await recordInspectionEvent(f.prisma, other.id, report(f.jobId, forged))).result, false);
    const first = await recordInspectionEvent(f.prisma, f.agent.id, report(f.jobId, stacks));
    assert.equal(first.result, true);
    assert.deepEqual(first.effects, [{ kind: 'inspection', inspectionId: f.jobId, state: 'succeeded' }]);
    assert.equal((await recordInspectionEvent(f.prisma, f.agent.id, report(f.jobId, forged))).result, false);
    const v = await inspectionView(f.prisma, f.op, f.jobId);
    assert.equal(v.state, 'succeeded');
    assert.equal(v.stacks?.threads[0]?.name, 'MainThread');
  });

  test('an oversized report is kept as failed RESULT_TOO_LARGE, not stored', async () => {
    const f = await sent();
    const big = {
      ...stacks,
      threads: [{ ...stacks.threads[0]!, name: 'x'.repeat(MAX_INSPECTION_RESULT_BYTES) }],
    };
    assert.equal((await recordInspectionEvent(f.prisma, f.agent.id, report(f.jobId, big))).result, true);
    const row = await f.prisma.processInspection.findUniqueOrThrow({ where: { id: f.jobId } });
    assert.equal(row.state, 'failed');
    assert.equal(row.errorCode, 'RESULT_TOO_LARGE');
    assert.equal(row.result, null);
  });

  test("a report that does not match its schema reads as MALFORMED_REPORT; the agent's refusal keeps its reason", async () => {
    const f = await sent();
    await recordInspectionEvent(f.prisma, f.agent.id, report(f.jobId, { threads: 'not a list' }));
    const v = await inspectionView(f.prisma, f.op, f.jobId);
    assert.equal(v.errorCode, 'MALFORMED_REPORT');
    assert.equal(v.stacks, null);
    const g = await sent('tasks');
    const refusal = JobEvent.parse({
      type: 'refused',
      jobId: g.jobId,
      seq: 1,
      at: new Date().toISOString(),
      code: 'POLICY',
      message: 'opted out',
    });
    await recordInspectionEvent(g.prisma, g.agent.id, refusal);
    const w = await inspectionView(g.prisma, g.op, g.jobId);
    assert.deepEqual([w.state, w.errorCode, w.message], ['refused', 'POLICY', 'opted out']);
  });

  test("a refusal in the agent's ack ends it refused; no ack concludes nothing; unanswered ones expire", async () => {
    const f = await sent();
    const noAck = await inspectionDispatchRefused(
      f.prisma,
      f.agent.id,
      f.jobId,
      { code: 'ACK_TIMEOUT', message: 'x' },
      true,
    );
    assert.equal(noAck.result, false);
    const later = new Date(Date.now() + INSPECT_JOB_TTL_MS + 1000);
    const expired = await expireInspections(f.prisma, later);
    assert.ok(expired.effects.some((e) => e.kind === 'inspection' && e.inspectionId === f.jobId));
    const v = await inspectionView(f.prisma, f.op, f.jobId);
    assert.deepEqual([v.state, v.errorCode], ['expired', 'NO_REPORT']);
    // A late report does not turn an expired inspection into a success.
    assert.equal((await recordInspectionEvent(f.prisma, f.agent.id, report(f.jobId, stacks))).result, false);
    const g = await sent();
    const refused = await inspectionDispatchRefused(
      g.prisma,
      g.agent.id,
      g.jobId,
      { code: 'REPLAY', message: 'seen' },
      false,
    );
    assert.equal(refused.result, true);
    assert.equal((await inspectionView(g.prisma, g.op, g.jobId)).state, 'refused');
  });

  test('the deployment can narrow who inspects (PYREACH_INSPECT_ROLES) or switch it off; refused before anything is signed', async () => {
    const { prisma, agent, proc } = await fleet();
    const op = await seedUser(prisma, 'operator');
    const admin = await seedUser(prisma, 'admin', 'admin-insp');
    const body = { agentId: agent.id, pid: 4242, startTime: proc.startTime, what: 'stacks' as const };
    await assert.rejects(
      startInspection(prisma, op, body, { ...v2, allowedRoles: ['admin'] }),
      (e: unknown) =>
        e instanceof AppError && e.code === 'FORBIDDEN' && /limited to admin/.test(e.userMessage ?? ''),
    );
    await assert.rejects(
      startInspection(prisma, admin, body, { ...v2, allowedRoles: [] }),
      (e: unknown) =>
        e instanceof AppError && e.code === 'FORBIDDEN' && /switched off/.test(e.userMessage ?? ''),
    );
    assert.equal(await prisma.processInspection.count({ where: { agentId: agent.id } }), 0);
    const ok = await startInspection(prisma, admin, body, { ...v2, allowedRoles: ['admin'] });
    assert.equal(ok.result.agentId, agent.id);
  });
});
