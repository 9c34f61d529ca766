import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PROTOCOL_VERSION } from '@pyreach/protocol/common';
import {
  createJoinToken,
  enrollAgent,
  getAgent,
  hashJoinToken,
  listAgents,
  markConnected,
  markDisconnected,
  recordHeartbeat,
  revokeAgent,
} from './agents';
import { verifyAuditChain } from './audit';
import { AppError } from './errors';
import { applyDelta, listHosts, listProcesses, matchSelector, saveSnapshot } from './inventory';
import {
  agentKeyPem,
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  snapshot,
} from '../../../../../test/support/services';

const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;

describeEachDatabase('agents and inventory', (db) => {
  const enrol = async (token: string, labels: Record<string, string> = {}) =>
    (
      await enrollAgent(db().prisma, {
        v: PROTOCOL_VERSION,
        token,
        publicKey: agentKeyPem(),
        hostname: 'web-1',
        labels,
        agentVersion: '0.1.0',
      })
    ).result;

  test('only an admin creates join tokens, and only the token hash is stored', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    for (const role of ['viewer', 'operator', 'approver'] as const) {
      await assert.rejects(createJoinToken(prisma, await seedUser(prisma, role), {}), code('FORBIDDEN'));
    }
    const t = await createJoinToken(prisma, admin, {
      labels: { env: 'prod' },
      ttlMinutes: 5,
      note: 'rack 4',
    });
    const row = await prisma.joinToken.findUniqueOrThrow({ where: { id: t.id } });
    assert.equal(row.tokenHash, hashJoinToken(t.token));
    assert.match(
      t.token,
      /^pyrjt_[A-Za-z0-9_-]{43}$/,
      'never starts with "-", so `--token <t>` is never read as an option',
    );
    assert.ok(!JSON.stringify(row).includes(t.token));
  });

  test('an agent enrols once with a token; only the token labels decide, what it claims is kept as reported', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { labels: { env: 'prod' } });
    const agent = await enrol(t.token, { env: 'dev', team: 'payments' });
    assert.deepEqual(agent.labels, { env: 'prod' });
    assert.deepEqual(agent.reportedLabels, { env: 'dev', team: 'payments' });
    await assert.rejects(enrol(t.token), code('UNAUTHENTICATED'), 'reused token');
    const tok = await prisma.joinToken.findUniqueOrThrow({ where: { id: t.id } });
    assert.equal(tok.usedByAgentId, agent.id);
  });

  test('an expired or unknown token is refused and enrols nobody', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { ttlMinutes: 1 }, new Date(Date.now() - 120_000));
    const before = await prisma.agent.count();
    await assert.rejects(enrol(t.token), code('UNAUTHENTICATED'));
    await assert.rejects(enrol('x'.repeat(43)), code('UNAUTHENTICATED'));
    assert.equal(await prisma.agent.count(), before);
  });

  test('two agents racing with one token: exactly one enrols', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, {});
    const results = await Promise.allSettled([enrol(t.token), enrol(t.token), enrol(t.token)]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });

  test('a revoked agent cannot connect, heartbeat or report inventory, and its in-flight work is marked lost', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { processes: [pyProcess(10)] });
    const online = await markConnected(prisma, agent.id);
    assert.equal(online.status, 'online');
    await recordHeartbeat(prisma, agent.id, { outboxDepth: 3 });
    assert.equal((await getAgent(prisma, agent.id)).outboxDepth, 3);
    await assert.rejects(
      revokeAgent(prisma, await seedUser(prisma, 'operator'), agent.id, 'x'),
      code('FORBIDDEN'),
    );
    await revokeAgent(prisma, admin, agent.id, 'host decommissioned');
    await assert.rejects(markConnected(prisma, agent.id), code('FORBIDDEN'));
    await assert.rejects(recordHeartbeat(prisma, agent.id, {}), code('FORBIDDEN'));
    await assert.rejects(saveSnapshot(prisma, agent.id, snapshot('h', [])), code('FORBIDDEN'));
    assert.ok(!(await listAgents(prisma)).some((a) => a.id === agent.id));
    assert.ok((await listAgents(prisma, { includeRevoked: true })).some((a) => a.id === agent.id));
    await assert.rejects(revokeAgent(prisma, admin, agent.id, 'again'), code('INVALID_STATE'));
  });

  test('connect and disconnect are audited; a second disconnect changes nothing', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin);
    await markConnected(prisma, agent.id);
    await markDisconnected(prisma, agent.id);
    await markDisconnected(prisma, agent.id);
    const actions = (
      await prisma.auditEvent.findMany({ where: { subjectId: agent.id }, orderBy: { seq: 'asc' } })
    ).map((e) => e.action);
    assert.deepEqual(actions, ['agent.enroll', 'agent.connect', 'agent.disconnect']);
    assert.equal((await verifyAuditChain(prisma)).ok, true);
  });

  test('a snapshot replaces the host’s processes and a delta adds and removes single processes', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, {
      labels: { env: 'stage' },
      hostname: 'stage-1',
      processes: [pyProcess(1), pyProcess(2)],
    });
    await saveSnapshot(
      prisma,
      agent.id,
      snapshot('stage-1', [pyProcess(2), pyProcess(3)], { env: 'prod', role: 'api' }),
    );
    let procs = await listProcesses(prisma, { agentId: agent.id });
    assert.deepEqual(
      procs.map((p) => p.pid),
      [2, 3],
    );
    assert.deepEqual(
      (await getAgent(prisma, agent.id)).labels,
      { env: 'stage' },
      'only the token decides the labels policies match',
    );
    assert.deepEqual((await getAgent(prisma, agent.id)).reportedLabels, { env: 'prod', role: 'api' });
    await applyDelta(prisma, agent.id, {
      upserted: [pyProcess(4)],
      removed: [{ pid: 2, startTime: '1002' }],
      scannedAt: new Date().toISOString(),
    });
    procs = await listProcesses(prisma, { agentId: agent.id });
    assert.deepEqual(
      procs.map((p) => p.pid),
      [3, 4],
    );
    const hosts = await listHosts(prisma, { labels: { env: 'stage' } });
    assert.deepEqual(
      hosts.filter((h) => h.agentId === agent.id).map((h) => h.processCount),
      [2],
    );
  });

  test('a delta before any snapshot is refused so the agent sends a snapshot', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin);
    await assert.rejects(
      applyDelta(prisma, agent.id, { upserted: [], removed: [], scannedAt: new Date().toISOString() }),
      code('NOT_FOUND'),
    );
  });

  test('a selector matches processes by host labels, command line, exe and user', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const a = await seedAgent(prisma, admin, {
      labels: { env: 'sel', tier: 'web' },
      processes: [
        pyProcess(100),
        pyProcess(101, { cmdline: ['python', 'celery', 'worker'], user: 'celery' }),
      ],
    });
    await seedAgent(prisma, admin, { labels: { env: 'sel', tier: 'db' }, processes: [pyProcess(200)] });
    assert.equal((await matchSelector(prisma, { labels: { env: 'sel' } })).length, 3);
    assert.deepEqual(
      (await matchSelector(prisma, { labels: { env: 'sel', tier: 'web' } })).map((p) => p.pid),
      [100, 101],
    );
    const celery = await matchSelector(prisma, {
      labels: { env: 'sel' },
      process: { cmdlineContains: 'CELERY' },
    });
    assert.deepEqual(
      celery.map((p) => [p.agentId, p.pid, p.startTime]),
      [[a.id, 101, '1101']],
    );
    assert.equal(
      (
        await matchSelector(prisma, {
          labels: { env: 'sel' },
          process: { user: 'celery', exeContains: 'python3.14' },
        })
      ).length,
      1,
    );
    assert.equal(
      (await matchSelector(prisma, { labels: { env: 'sel' }, process: { cmdlineContains: '%' } })).length,
      0,
      'no LIKE wildcards',
    );
  });
});
