import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PROTOCOL_VERSION } from '@pyreach/protocol/common';
import {
  createJoinToken,
  enrollAgent,
  getAgent,
  hashJoinToken,
  listAgents,
  listJoinTokens,
  markConnected,
  markDisconnected,
  recordHeartbeat,
  revokeAgent,
  revokeJoinToken,
  revokeJoinTokenAgents,
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
  const enrolOutcome = (token: string, labels: Record<string, string> = {}, hostname = 'web-1', now?: Date) =>
    enrollAgent(
      db().prisma,
      { v: PROTOCOL_VERSION, token, publicKey: agentKeyPem(), hostname, labels, agentVersion: '0.1.0' },
      now,
    );
  const enrol = async (token: string, labels: Record<string, string> = {}, hostname = 'web-1', now?: Date) =>
    (await enrolOutcome(token, labels, hostname, now)).result;
  const auditOf = (subjectId: string, action: string) =>
    db().prisma.auditEvent.findMany({ where: { subjectId, action }, orderBy: { seq: 'asc' } });

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

  test('an agent enrols once with a default token; only the token labels decide, what it claims is kept as reported', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { labels: { env: 'prod' } });
    assert.equal(t.maxUses, 1, 'one-time unless asked otherwise');
    const agent = await enrol(t.token, { env: 'dev', team: 'payments' });
    assert.deepEqual(agent.labels, { env: 'prod' });
    assert.deepEqual(agent.reportedLabels, { env: 'dev', team: 'payments' });
    assert.equal(agent.joinTokenId, t.id, 'the agent names its token');
    await assert.rejects(enrol(t.token, {}, 'web-2'), code('JOIN_TOKEN_USED_UP'), 'reused token');
    const tok = await prisma.joinToken.findUniqueOrThrow({ where: { id: t.id } });
    assert.equal(tok.useCount, 1);
  });

  test('an unknown token is UNAUTHENTICATED and audits nothing; an expired one says so and enrols nobody', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { ttlMinutes: 1 }, new Date(Date.now() - 120_000));
    const before = await prisma.agent.count();
    const auditBefore = await prisma.auditEvent.count();
    await assert.rejects(enrol('x'.repeat(43)), code('UNAUTHENTICATED'));
    assert.equal(await prisma.auditEvent.count(), auditBefore, 'an unattributable guess writes no audit row');
    await assert.rejects(enrol(t.token), code('JOIN_TOKEN_EXPIRED'));
    assert.equal(await prisma.agent.count(), before);
    const [refused] = await auditOf(t.id, 'agent.enroll_refused');
    assert.equal((refused?.data as { reason?: string }).reason, 'JOIN_TOKEN_EXPIRED');
  });

  test('ten agents racing for a token with five uses: exactly five enrol, the others are told it is used up', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { maxUses: 5, labels: { env: 'race' } });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => enrol(t.token, {}, `race-${i}`)),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
    for (const r of results.filter((r) => r.status === 'rejected'))
      assert.ok(code('JOIN_TOKEN_USED_UP')((r as PromiseRejectedResult).reason));
    const row = await prisma.joinToken.findUniqueOrThrow({ where: { id: t.id } });
    assert.equal(row.useCount, 5);
    assert.equal(await prisma.agent.count({ where: { joinTokenId: t.id } }), 5);
    assert.equal(
      (await auditOf(t.id, 'agent.enroll_refused')).length,
      1,
      'refusals of one token: one event a minute',
    );
    assert.equal(row.refusedCount, 4, 'the others are counted on the token');
    // Refused again a minute later: audited, carrying the count of the ones not audited.
    await assert.rejects(
      enrol(t.token, {}, 'race-late', new Date(Date.now() + 61_000)),
      code('JOIN_TOKEN_USED_UP'),
    );
    const events = await auditOf(t.id, 'agent.enroll_refused');
    assert.equal(events.length, 2);
    assert.equal((events[1]!.data as { refusedSinceLastAudit: number }).refusedSinceLastAudit, 4);
    assert.equal((await verifyAuditChain(prisma)).ok, true);
  });

  test('an unlimited token bound to a host pattern enrols matching hosts only, whatever their case', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { maxUses: null, hostPattern: 'node-*.prod.example' });
    assert.equal(t.maxUses, null);
    assert.ok(
      t.expiresAt.getTime() - Date.now() > 29 * 24 * 3600_000,
      'a reusable token lives 30 days by default',
    );
    await enrol(t.token, {}, 'node-a1.prod.example');
    await enrol(t.token, {}, 'NODE-B2.Prod.Example');
    for (const host of ['node-a1.prod.example.evil', 'evil-node-a1.prod.example', 'node-a1.stage.example'])
      await assert.rejects(enrol(t.token, {}, host), code('JOIN_TOKEN_HOST_MISMATCH'), host);
    const row = await prisma.joinToken.findUniqueOrThrow({ where: { id: t.id } });
    assert.equal(row.useCount, 2, 'a refused host takes no use');
    const [refused] = await auditOf(t.id, 'agent.enroll_refused');
    assert.equal((refused?.data as { hostname?: string }).hostname, 'node-a1.prod.example.evil');
  });

  test('a token is created only with a valid pattern and a life that fits its kind', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const field = (f: string) => (e: unknown) =>
      e instanceof AppError && e.code === 'VALIDATION' && JSON.stringify(e.details ?? e.message).includes(f);
    for (const hostPattern of ['*', '*?*', 'node-[ab]', 'a b', ''])
      await assert.rejects(createJoinToken(prisma, admin, { maxUses: 3, hostPattern }), field('hostPattern'));
    await assert.rejects(createJoinToken(prisma, admin, { ttlMinutes: 8 * 24 * 60 }), field('ttlMinutes'));
    await assert.rejects(
      createJoinToken(prisma, admin, { maxUses: 5, ttlMinutes: 366 * 24 * 60 }),
      field('ttlMinutes'),
    );
    await assert.rejects(createJoinToken(prisma, admin, { maxUses: 0 }), field('maxUses'));
    const long = await createJoinToken(prisma, admin, { maxUses: 50, ttlMinutes: 365 * 24 * 60 });
    assert.equal(long.maxUses, 50);
  });

  test('a revoked token enrols nobody; the agents it enrolled stay until revoked together', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const operator = await seedUser(prisma, 'operator');
    const t = await createJoinToken(prisma, admin, { maxUses: 10, labels: { env: 'rv' } });
    const a = await enrol(t.token, {}, 'rv-1');
    const b = await enrol(t.token, {}, 'rv-2');
    const other = await seedAgent(prisma, admin);
    await assert.rejects(revokeJoinToken(prisma, operator, t.id), code('FORBIDDEN'));
    const revoked = await revokeJoinToken(prisma, admin, t.id);
    assert.equal(revoked.result.status, 'revoked');
    await assert.rejects(revokeJoinToken(prisma, admin, t.id), code('INVALID_STATE'));
    await assert.rejects(revokeJoinToken(prisma, admin, 'jt_nope'), code('NOT_FOUND'));
    await assert.rejects(enrol(t.token, {}, 'rv-3'), code('JOIN_TOKEN_REVOKED'));
    assert.equal((await getAgent(prisma, a.id)).revokedAt, null, 'revoking the token leaves its agents');

    const listed = (await listJoinTokens(prisma, admin)).find((x) => x.id === t.id)!;
    assert.equal(listed.useCount, 2);
    assert.equal(listed.maxUses, 10);
    assert.deepEqual(listed.agents.map((x) => x.name).sort(), ['rv-1', 'rv-2']);
    assert.ok(!JSON.stringify(listed).includes('tokenHash'));
    await assert.rejects(listJoinTokens(prisma, operator), code('FORBIDDEN'));

    await assert.rejects(revokeJoinTokenAgents(prisma, operator, t.id, 'leak'), code('FORBIDDEN'));
    const all = await revokeJoinTokenAgents(prisma, admin, t.id, 'token leaked');
    assert.deepEqual([...all.result.revokedAgentIds].sort(), [a.id, b.id].sort());
    assert.deepEqual(
      all.effects
        .filter((e) => e.kind === 'agent-revoked')
        .map((e) => (e as { agentId: string }).agentId)
        .sort(),
      [a.id, b.id].sort(),
      'the gateway drops every one of their sockets',
    );
    for (const id of [a.id, b.id]) await assert.rejects(markConnected(prisma, id), code('FORBIDDEN'));
    assert.equal((await getAgent(prisma, other.id)).revokedAt, null, 'agents of other tokens stay');
    assert.equal((await auditOf(t.id, 'agent.join_token.revoke_agents')).length, 1);
    assert.equal(
      (await revokeJoinTokenAgents(prisma, admin, t.id, 'again')).result.revokedAgentIds.length,
      0,
    );
  });

  test('a host that enrols again with the same token replaces its old agent: the fleet shows it once', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const t = await createJoinToken(prisma, admin, { maxUses: 5, labels: { env: 're' } });
    const first = await enrol(t.token, {}, 're-node-1');
    await saveSnapshot(prisma, first.id, snapshot('re-node-1', [pyProcess(7)]));
    const neighbour = await enrol(t.token, {}, 're-node-2');
    const again = await enrolOutcome(t.token, {}, 're-node-1');
    assert.notEqual(again.result.id, first.id, 'a new identity with its own key pair');
    assert.notEqual(again.result.publicKey, first.publicKey);
    assert.ok(
      again.effects.some((e) => e.kind === 'agent-revoked' && e.agentId === first.id),
      'the old agent is dropped',
    );
    const old = await getAgent(prisma, first.id);
    assert.ok(old.revokedAt);
    assert.match(old.revokedReason ?? '', /replaced by/);
    assert.equal((await getAgent(prisma, neighbour.id)).revokedAt, null, 'another host of the token stays');
    const [replaced] = await auditOf(first.id, 'agent.replaced');
    assert.equal((replaced?.data as { replacedBy?: string }).replacedBy, again.result.id);
    const live = (await listAgents(prisma)).filter((a) => a.name === 're-node-1');
    assert.deepEqual(
      live.map((a) => a.id),
      [again.result.id],
    );
    assert.ok(!(await listHosts(prisma, { labels: { env: 're' } })).some((h) => h.agentId === first.id));
    assert.equal((await prisma.joinToken.findUniqueOrThrow({ where: { id: t.id } })).useCount, 3);
    await assert.rejects(markConnected(prisma, first.id), code('FORBIDDEN'));
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
