import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyAuditChain } from './audit';
import { AppError } from './errors';
import * as requests from './requests';
import {
  authenticateToken,
  createApiToken,
  createServiceAccount,
  hashApiToken,
  listApiTokens,
  listServiceAccounts,
  revokeApiToken,
} from './service-accounts';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  testKeyPair,
} from '../../../../../test/support/services';

const ATTEST = testKeyPair();

const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const DAY = 24 * 60 * 60_000;

describeEachDatabase('service accounts and API tokens', (db) => {
  test('a token is shown once, stored hashed, and authenticates as its service account until it expires', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const sa = await createServiceAccount(prisma, admin, { name: 'ci-bot', role: 'operator' });
    assert.equal(sa.ownerId, admin.id, 'the creating admin owns it by default');
    const t0 = new Date();
    const { token, tokenId, expiresAt } = await createApiToken(prisma, admin, sa.id, { ttlDays: 2 }, t0);
    assert.match(token, /^pyr_tok_[A-Za-z0-9_-]+_[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt.getTime(), t0.getTime() + 2 * DAY);
    const row = await prisma.apiToken.findUniqueOrThrow({ where: { id: tokenId } });
    assert.equal(row.tokenHash, hashApiToken(token));
    assert.ok(!JSON.stringify(row).includes(token.slice(-43)), 'the secret is not stored');
    const listed = await listApiTokens(prisma, admin, sa.id);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.status, 'active');
    assert.ok(!('tokenHash' in (listed[0] ?? {})), 'listings never carry the hash');

    const actor = await authenticateToken(prisma, token, new Date(t0.getTime() + 1000));
    assert.deepEqual(actor, {
      type: 'service',
      id: sa.id,
      name: 'ci-bot',
      role: 'operator',
      ownerId: admin.id,
      tokenId,
    });
    const used = await prisma.apiToken.findUniqueOrThrow({ where: { id: tokenId } });
    assert.ok(used.lastUsedAt, 'lastUsedAt is recorded');
    assert.ok((await listServiceAccounts(prisma, admin))[0]?.lastUsedAt);

    await assert.rejects(
      authenticateToken(prisma, token, new Date(t0.getTime() + 2 * DAY)),
      code('TOKEN_EXPIRED'),
    );
    assert.equal(
      (await listApiTokens(prisma, admin, sa.id, new Date(t0.getTime() + 3 * DAY)))[0]?.status,
      'expired',
    );
  });

  test('a forged, malformed or revoked token is refused with its own code', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const sa = await createServiceAccount(prisma, admin, { name: 'forge-test', role: 'viewer' });
    const { token, tokenId } = await createApiToken(prisma, admin, sa.id, {});
    // The attacker knows a real token id and guesses the secret.
    const forged = `${token.slice(0, -43)}${'A'.repeat(43)}`;
    await assert.rejects(authenticateToken(prisma, forged), code('TOKEN_INVALID'));
    await assert.rejects(
      authenticateToken(prisma, 'pyr_tok_nosuch_' + 'B'.repeat(43)),
      code('TOKEN_INVALID'),
    );
    await assert.rejects(authenticateToken(prisma, 'not-a-token'), code('TOKEN_INVALID'));
    await assert.rejects(authenticateToken(prisma, `${token}x`), code('TOKEN_INVALID'));
    const revoked = await revokeApiToken(prisma, admin, tokenId);
    assert.equal(revoked.status, 'revoked');
    await assert.rejects(authenticateToken(prisma, token), code('TOKEN_REVOKED'));
    assert.equal((await revokeApiToken(prisma, admin, tokenId)).status, 'revoked', 'idempotent');
  });

  test('only an admin person manages accounts: no operator, no token; names are unique; ttl is bounded', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const op = await seedUser(prisma, 'operator');
    await assert.rejects(
      createServiceAccount(prisma, op, { name: 'nope', role: 'admin' }),
      code('FORBIDDEN'),
    );
    const sa = await createServiceAccount(prisma, admin, { name: 'root-bot', role: 'admin' });
    await assert.rejects(
      createServiceAccount(prisma, admin, { name: 'root-bot', role: 'viewer' }),
      code('CONFLICT'),
    );
    await assert.rejects(
      createServiceAccount(prisma, admin, { name: 'x', role: 'viewer', ownerId: 'u_nobody' }),
      code('VALIDATION'),
    );
    await assert.rejects(createApiToken(prisma, admin, sa.id, { ttlDays: 366 }), code('VALIDATION'));
    await assert.rejects(createApiToken(prisma, admin, 'sa_missing', {}), code('NOT_FOUND'));
    const { token } = await createApiToken(prisma, admin, sa.id, {});
    const bot = await authenticateToken(prisma, token);
    // Even an admin-role token cannot mint tokens or accounts (it would outlive its own revocation).
    await assert.rejects(createApiToken(prisma, bot, sa.id, {}), code('PERSON_REQUIRED'));
    await assert.rejects(
      createServiceAccount(prisma, bot, { name: 'child', role: 'admin' }),
      code('PERSON_REQUIRED'),
    );
  });

  test('a token files and cancels, never reviews; its owner is the requester and cannot approve; audited with the token id', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const owner = await seedUser(prisma, 'approver', 'owner');
    const agent = await seedAgent(prisma, admin, { labels: { env: 'sa' }, processes: [pyProcess(100)] });
    const sa = await createServiceAccount(prisma, admin, {
      name: 'runbook',
      role: 'admin',
      ownerId: owner.id,
    });
    const { token, tokenId } = await createApiToken(prisma, admin, sa.id, {});
    const bot = await authenticateToken(prisma, token);
    const targets = {
      type: 'processes' as const,
      processes: [{ agentId: agent.id, pid: 100, startTime: '1100' }],
    };
    const req = (
      await requests.createRequest(
        prisma,
        bot,
        {
          kind: 'library',
          scriptId: 'threads.dump_stacks',
          targets,
          reason: 'incident 42: stacks',
        },
        new Date(),
        ATTEST,
      )
    ).result;
    assert.equal(req.requesterId, owner.id, "the owner is the request's requester");
    await assert.rejects(
      requests.reviewRequest(
        prisma,
        bot,
        req.id,
        { decision: 'approve' },
        { authenticatedAt: new Date(), attestation: ATTEST },
      ),
      code('PERSON_REQUIRED'),
    );
    await assert.rejects(
      requests.reviewRequest(
        prisma,
        owner,
        req.id,
        { decision: 'approve' },
        { authenticatedAt: new Date(), attestation: ATTEST },
      ),
      code('SELF_APPROVAL'),
      'four-eyes: the owner counts as requester',
    );
    const cancelled = (await requests.cancelRequest(prisma, bot, req.id, 'not needed')).result;
    assert.equal(cancelled.state, 'cancelled');

    const events = await prisma.auditEvent.findMany({
      where: { subjectId: req.id },
      orderBy: { seq: 'asc' },
    });
    assert.deepEqual(
      events.map((e) => [e.action, e.actorType, e.actorId, e.actorName]),
      [
        ['request.create', 'service', sa.id, 'runbook'],
        ['request.cancel', 'service', sa.id, 'runbook'],
      ],
    );
    for (const e of events) assert.equal((e.data as { tokenId?: string }).tokenId, tokenId);
    assert.equal((await verifyAuditChain(prisma)).ok, true, 'the chain verifies with service actors');
  });
});
