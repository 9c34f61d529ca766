import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyAnyJob } from '@pyreach/protocol/job';
import { AppError } from './errors';
import { startInspection } from './inspect';
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
      startInspection(prisma, op, body, { signing: keys.signing, agentVersionOf: () => 1 }),
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
});
