/**
 * Issue 11 item 4, "no one alone": second-admin confirmation and break-glass.
 *
 * Governance: a change that widens who may approve waits for a second admin; with one admin it takes effect
 * unconfirmed and flags what it touches. Break-glass: an emergency runs at once without votes only under a signed,
 * still-valid grant, is marked and audited, and waits for a second person to close its review afterwards. Played
 * as an admin with an accomplice, the granted person, a colleague and a database writer. Real databases (PGlite
 * and PostgreSQL), real services, real keys.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CreateRequest } from '@pyreach/protocol/api';
import { closeAfterReview, grantBreakGlass, revokeBreakGlass } from './break-glass';
import * as dispatch from './dispatch';
import type { Outcome } from './effects';
import { AppError } from './errors';
import { decideChange } from './governance';
import { APPLIERS } from './governance-apply';
import { createPolicy, deletePolicy, getPolicy, updatePolicy } from './policy';
import * as requests from './requests';
import { getRequest, listRequests } from './requests';
import { createUser, setDisabled, setRole } from './users';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedPolicy,
  seedUser,
  testKeyPair,
  type UserActor,
} from '../../../../../test/support/services';

const resultOf =
  <A extends unknown[], T>(f: (...a: A) => Promise<Outcome<T>>) =>
  async (...a: A): Promise<T> =>
    (await f(...a)).result;
const createRequest = resultOf(requests.createRequest);
const reviewRequest = resultOf(requests.reviewRequest);
const planExecutions = resultOf(dispatch.planExecutions);

const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const ATTEST = testKeyPair();
const keys = { signing: testKeyPair(), attestation: ATTEST };
const uniq = () => Math.random().toString(36).slice(2, 10);
const fresh = () => ({ authenticatedAt: new Date(), attestation: ATTEST });
const decide = (
  prisma: Parameters<typeof decideChange>[0],
  actor: UserActor,
  id: string,
  decision: 'confirm' | 'reject',
  authenticatedAt = new Date(),
) =>
  decideChange(
    prisma,
    actor,
    id,
    { decision, comment: 'checked with the team' },
    { authenticatedAt, now: new Date(), attestation: ATTEST },
    APPLIERS,
  );
const hash = async () => 'unused-password-hash';

describeEachDatabase('governance: a second admin confirms who may approve', (db) => {
  async function world() {
    const { prisma } = db();
    const label = `ga-${uniq()}`;
    const a = await seedUser(prisma, 'admin', 'admin A');
    const b = await seedUser(prisma, 'admin', 'admin B');
    const agent = await seedAgent(prisma, a, { labels: { env: label }, processes: [pyProcess(100)] });
    // Only approvers (not admins) may approve here, so the accomplice's promotion is what decides.
    await seedPolicy(
      prisma,
      {
        name: `ga-${label}`,
        matchLabels: { env: label },
        priority: 10,
        requiredApprovals: 1,
        approverRoles: ['approver'],
        allowCustomCode: true,
      },
      ATTEST,
    );
    const op = await seedUser(prisma, 'operator');
    const file = () =>
      createRequest(
        prisma,
        op,
        {
          kind: 'custom',
          code: 'print("ok")',
          targets: { type: 'processes', processes: [{ agentId: agent.id, pid: 100, startTime: '1100' }] },
          reason: 'routine check',
        },
        new Date(),
        ATTEST,
      );
    return { prisma, a, b, op, file };
  }

  test('admin A promotes an accomplice: nothing changes until admin B confirms; A cannot confirm it', async () => {
    const w = await world();
    const acc = await seedUser(w.prisma, 'operator', 'accomplice');
    const { user, change } = await setRole(w.prisma, w.a, acc.id, 'approver', ATTEST);
    assert.equal(user.role, 'operator', 'the role stays until confirmed');
    assert.equal(change?.state, 'pending');
    const req = await w.file();
    // The session reads the role from the database: still operator, so no vote.
    await assert.rejects(
      reviewRequest(w.prisma, acc, req.id, { decision: 'approve' }, fresh()),
      code('FORBIDDEN'),
      'the pending approver cannot vote',
    );
    await assert.rejects(decide(w.prisma, w.a, change!.id, 'confirm'), code('SELF_APPROVAL'));
    await assert.rejects(decide(w.prisma, acc, change!.id, 'confirm'), code('FORBIDDEN'));
    await assert.rejects(
      decide(w.prisma, w.b, change!.id, 'confirm', new Date(Date.now() - 3_600_000)),
      code('STALE_AUTH'),
    );
    const confirmed = await decide(w.prisma, w.b, change!.id, 'confirm');
    assert.equal(confirmed.result.change.state, 'confirmed');
    assert.deepEqual(confirmed.effects, [
      { kind: 'sessions-closed', userId: acc.id, reason: 'role changed' },
    ]);
    assert.equal((await w.prisma.user.findUniqueOrThrow({ where: { id: acc.id } })).role, 'approver');
    await assert.rejects(decide(w.prisma, w.b, change!.id, 'confirm'), code('INVALID_STATE'));
    const voted = await reviewRequest(
      w.prisma,
      { ...acc, role: 'approver' },
      req.id,
      { decision: 'approve' },
      fresh(),
    );
    assert.equal(voted.state, 'approved');
    await planExecutions(w.prisma, req.id);
    const sent = (await dispatch.sendWave(w.prisma, req.id, keys, () => true)).result;
    assert.equal(sent.length, 1, 'a confirmed approver’s vote gets the job signed');
    assert.equal((await getRequest(w.prisma, req.id)).unconfirmedGovernance, false);
    const audit = await w.prisma.auditEvent.findMany({
      where: {
        subjectId: acc.id,
        action: { in: ['governance.propose', 'governance.confirm', 'user.role.set'] },
      },
      orderBy: { seq: 'asc' },
    });
    assert.deepEqual(
      audit.map((e) => [e.action, e.actorId]),
      [
        ['governance.propose', w.a.id],
        ['user.role.set', w.b.id],
        ['governance.confirm', w.b.id],
      ],
    );
  });

  test('a database writer marks the pending promotion confirmed and sets the role: the vote does not count at dispatch', async () => {
    const w = await world();
    const acc = await seedUser(w.prisma, 'operator', 'accomplice');
    const { change } = await setRole(w.prisma, w.a, acc.id, 'approver', ATTEST);
    await w.prisma.$executeRawUnsafe(
      `UPDATE "governance_change" SET "state" = 'confirmed', "decidedById" = $2, "decidedAt" = now(),
         "decisionAttestation" = $3 WHERE "id" = $1`,
      change!.id,
      w.b.id,
      Buffer.alloc(64).toString('base64'),
    );
    await w.prisma.$executeRawUnsafe(`UPDATE "user" SET "role" = 'approver' WHERE "id" = $1`, acc.id);
    const req = await w.file();
    const voted = await reviewRequest(
      w.prisma,
      { ...acc, role: 'approver' },
      req.id,
      { decision: 'approve' },
      fresh(),
    );
    assert.equal(voted.state, 'approved', 'the vote row is written (the database says approver)');
    const [ex] = await planExecutions(w.prisma, req.id);
    assert.deepEqual((await dispatch.sendWave(w.prisma, req.id, keys, () => true)).result, []);
    const held = await w.prisma.execution.findUniqueOrThrow({ where: { id: ex!.id } });
    assert.equal(held.state, 'awaiting_approval');
    assert.match(held.errorMessage ?? '', /role not confirmed: .*without a valid control-plane signature/);
    // A proposal row inserted whole (no proposal signature) is refused the same way.
    const acc2 = await seedUser(w.prisma, 'approver', 'inserted');
    await w.prisma.$executeRawUnsafe(
      `INSERT INTO "governance_change" ("id", "kind", "subjectType", "subjectId", "data", "reasons", "state", "requestedById")
       VALUES ($1, 'user.role', 'user', $2, '{}', '{}', 'unconfirmed', $3)`,
      `gov_forged${uniq()}`,
      acc2.id,
      w.a.id,
    );
    const req2 = await w.file();
    await reviewRequest(w.prisma, acc2, req2.id, { decision: 'approve' }, fresh());
    const [ex2] = await planExecutions(w.prisma, req2.id);
    assert.deepEqual((await dispatch.sendWave(w.prisma, req2.id, keys, () => true)).result, []);
    assert.equal(
      (await w.prisma.execution.findUniqueOrThrow({ where: { id: ex2!.id } })).state,
      'awaiting_approval',
    );
  });

  test('loosening a policy waits for a second admin; tightening and disabling take effect at once', async () => {
    const w = await world();
    const label = `pol-${uniq()}`;
    const strict = await seedPolicy(
      w.prisma,
      {
        name: `strict-${label}`,
        matchLabels: { env: label },
        priority: 20,
        requiredApprovals: 2,
      },
      ATTEST,
    );
    const rules = { name: strict.name, matchLabels: { env: label }, priority: 20 };
    const tighter = await updatePolicy(w.prisma, w.a, strict.id, { ...rules, requiredApprovals: 3 }, ATTEST);
    assert.equal(tighter.change, null);
    assert.equal(tighter.policy?.requiredApprovals, 3);
    const looser = await updatePolicy(w.prisma, w.a, strict.id, { ...rules, requiredApprovals: 1 }, ATTEST);
    assert.equal(looser.change?.state, 'pending');
    assert.match(looser.change!.reasons.join(), /fewer approvals/);
    assert.equal((await getPolicy(w.prisma, strict.id)).requiredApprovals, 3, 'unchanged until confirmed');
    const lowered = await updatePolicy(
      w.prisma,
      w.a,
      strict.id,
      { ...rules, requiredApprovals: 3, priority: -2000 },
      ATTEST,
    );
    assert.equal(lowered.change?.state, 'pending', 'lowering a strict policy below the default loosens');
    const created = await createPolicy(
      w.prisma,
      w.a,
      {
        name: `open-${label}`,
        matchLabels: { env: label },
        priority: 30,
        requiredApprovals: 1,
        allowCustomCode: true,
      },
      ATTEST,
    );
    assert.equal(created.policy, null, 'a looser policy over a stricter one is not created yet');
    assert.equal(created.change?.state, 'pending');
    const removed = await deletePolicy(w.prisma, w.a, strict.id, ATTEST);
    assert.equal(removed.deleted, null);
    await decide(w.prisma, w.b, looser.change!.id, 'confirm');
    assert.equal((await getPolicy(w.prisma, strict.id)).requiredApprovals, 1);
    await decide(w.prisma, w.b, created.change!.id, 'reject');
    await assert.rejects(decide(w.prisma, w.b, created.change!.id, 'confirm'), code('INVALID_STATE'));
    assert.equal(await w.prisma.policy.count({ where: { name: `open-${label}` } }), 0);
    // A second admin's confirmation of a pending deletion deletes it.
    await decide(w.prisma, w.b, removed.change!.id, 'confirm');
    assert.equal(await w.prisma.policy.count({ where: { id: strict.id } }), 0);
    // Disabling an approver narrows who may approve: no confirmation.
    const ap = await seedUser(w.prisma, 'approver');
    const off = await setDisabled(w.prisma, w.a, ap.id, { disabled: true, reason: 'left the team' });
    assert.equal(off.result.user.disabled, true);
    // A new approver created by A starts as a viewer until B confirms.
    const made = await createUser(
      w.prisma,
      w.a,
      {
        email: `new-${uniq()}@example.test`,
        name: 'New',
        password: 'long-enough-password',
        role: 'approver',
      },
      hash,
      new Date(),
      ATTEST,
    );
    assert.equal(made.user.role, 'viewer');
    assert.equal(made.change?.state, 'pending');
    await decide(w.prisma, w.b, made.change!.id, 'confirm');
    assert.equal((await w.prisma.user.findUniqueOrThrow({ where: { id: made.user.id } })).role, 'approver');
  });

  test('the only admin: changes take effect unconfirmed, what they touch is flagged, a second admin clears it', async () => {
    const { prisma } = db();
    await prisma.$executeRawUnsafe(`UPDATE "user" SET role = 'viewer' WHERE role = 'admin'`);
    const w = await world();
    // world() seeded two admins: make A the only one.
    await prisma.user.update({ where: { id: w.b.id }, data: { role: 'viewer' } });
    const acc = await seedUser(prisma, 'operator', 'promoted');
    const { user, change } = await setRole(prisma, w.a, acc.id, 'approver', ATTEST);
    assert.equal(user.role, 'approver', 'alone, the admin’s change takes effect');
    assert.equal(change?.state, 'unconfirmed');
    const req = await w.file();
    await reviewRequest(prisma, { ...acc, role: 'approver' }, req.id, { decision: 'approve' }, fresh());
    assert.equal((await getRequest(prisma, req.id)).unconfirmedGovernance, true);
    const listed = (await listRequests(prisma, { limit: 200 })).items.find((r) => r.id === req.id);
    assert.equal(listed?.unconfirmedGovernance, true);
    const other = await w.file();
    assert.equal(
      (await getRequest(prisma, other.id)).unconfirmedGovernance,
      false,
      'not yet approved by them',
    );
    await planExecutions(prisma, req.id);
    assert.equal(
      (await dispatch.sendWave(prisma, req.id, keys, () => true)).result.length,
      1,
      'it runs, flagged',
    );
    // A sock-puppet admin made by the only admin cannot confirm: its own admin role is unconfirmed.
    const puppet = await createUser(
      prisma,
      w.a,
      {
        email: `puppet-${uniq()}@example.test`,
        name: 'Puppet',
        password: 'long-enough-password',
        role: 'admin',
      },
      hash,
      new Date(),
      ATTEST,
    );
    assert.equal(puppet.change?.state, 'unconfirmed');
    const puppetActor: UserActor = { type: 'user', id: puppet.user.id, name: 'Puppet', role: 'admin' };
    await assert.rejects(decide(prisma, puppetActor, change!.id, 'confirm'), code('FORBIDDEN'));
    await assert.rejects(decide(prisma, w.a, change!.id, 'reject'), code('SELF_APPROVAL'));
    // A second, real admin confirms later: the flag goes.
    const second = await seedUser(prisma, 'admin', 'second admin');
    await decide(prisma, second, change!.id, 'confirm');
    assert.equal((await getRequest(prisma, req.id)).unconfirmedGovernance, false);
  });

  // Break-glass shares this database (one PGlite and one PostgreSQL for the file).
  describe('break-glass: an emergency runs at once, marked, and is reviewed afterwards', () => {
    async function bgWorld() {
      const { prisma } = db();
      const admin = await seedUser(prisma, 'admin');
      const agent = await seedAgent(prisma, admin, { processes: [pyProcess(100)] });
      const op = await seedUser(prisma, 'operator', 'on call');
      const body = (reason = 'the orders queue is stuck, customers cannot pay'): CreateRequest => ({
        kind: 'custom',
        code: 'print("unstick")',
        targets: { type: 'processes', processes: [{ agentId: agent.id, pid: 100, startTime: '1100' }] },
        reason: 'incident 4711',
        emergency: true,
        emergencyReason: reason,
      });
      const file = async (who = op, b = body(), now = new Date()) =>
        (await requests.createRequest(prisma, who, b, now, ATTEST)).result;
      const grant = async (expiresAt?: string) =>
        (
          await grantBreakGlass(
            prisma,
            admin,
            { userId: op.id, reason: 'on call this week', expiresAt },
            ATTEST,
          )
        ).result.grant;
      const send = async (id: string, now = new Date()) => {
        await dispatch.planExecutions(prisma, id, undefined, now);
        return (await dispatch.sendWave(prisma, id, keys, () => true, now)).result;
      };
      return { prisma, admin, op, body, file, grant, send };
    }

    test('without a grant it is FORBIDDEN naming break-glass; an admin cannot grant themself', async () => {
      const w = await bgWorld();
      await assert.rejects(
        w.file(),
        (e: unknown) => code('FORBIDDEN')(e) && /break-glass/.test((e as AppError).userMessage),
      );
      await assert.rejects(
        grantBreakGlass(w.prisma, w.admin, { userId: w.admin.id, reason: 'me, myself' }, ATTEST),
        code('SELF_APPROVAL'),
      );
      // A grant row a database writer inserts is no grant: the control plane never signed it.
      await w.prisma.$executeRawUnsafe(
        `INSERT INTO "break_glass_grant" ("id", "userId", "grantedById", "reason") VALUES ($1, $2, $3, 'forged')`,
        `bg_forged${Math.random().toString(36).slice(2)}`,
        w.op.id,
        w.admin.id,
      );
      await assert.rejects(w.file(), code('FORBIDDEN'));
    });

    test('granted: it runs with no votes, is marked and audited, and a second person closes its review afterwards', async () => {
      const w = await bgWorld();
      const g = await w.grant();
      const req = await w.file();
      assert.equal(req.state, 'approved');
      assert.equal(req.emergency, true);
      assert.equal(req.afterReview, 'open');
      assert.equal(req.breakGlassGrantId, g.id);
      const plain = (
        await requests.createRequest(
          w.prisma,
          w.op,
          {
            ...w.body(),
            emergency: undefined,
            emergencyReason: undefined,
          },
          new Date(),
          ATTEST,
        )
      ).result;
      assert.notEqual(
        plain.contentHash,
        req.contentHash,
        'the emergency and its reason are in the content hash',
      );
      const sent = await w.send(req.id);
      assert.equal(sent.length, 1, 'signed and sent without a single vote');
      const audit = await w.prisma.auditEvent.findFirstOrThrow({
        where: { action: 'request.break_glass', subjectId: req.id },
      });
      assert.equal((audit.data as { grantId: string }).grantId, g.id);
      const queue = (await listRequests(w.prisma, { review: 'after', limit: 200 })).items.map((r) => r.id);
      assert.ok(queue.includes(req.id), 'in the needs-review-afterwards queue');
      assert.ok(!queue.includes(plain.id));
      const ap = await seedUser(w.prisma, 'approver');
      const colleague = await seedUser(w.prisma, 'operator');
      await assert.rejects(
        closeAfterReview(w.prisma, w.op, req.id, { comment: 'all fine, I did it' }),
        code('FORBIDDEN'),
      );
      const adminOp = await seedUser(w.prisma, 'admin');
      await grantBreakGlass(w.prisma, w.admin, { userId: adminOp.id, reason: 'admin on call' }, ATTEST);
      const own = await w.file(adminOp);
      await assert.rejects(
        closeAfterReview(w.prisma, adminOp, own.id, { comment: 'reviewing myself' }),
        code('SELF_APPROVAL'),
        'the requester cannot close their own after-review',
      );
      await assert.rejects(
        closeAfterReview(w.prisma, colleague, req.id, { comment: 'looks fine' }),
        code('FORBIDDEN'),
      );
      const closed = await closeAfterReview(w.prisma, ap, req.id, {
        comment: 'checked the output: queue drained',
      });
      assert.equal(closed.result.afterReview, 'closed');
      assert.equal((await getRequest(w.prisma, req.id)).afterReviewById, ap.id);
      await assert.rejects(
        closeAfterReview(w.prisma, ap, req.id, { comment: 'again' }),
        code('INVALID_STATE'),
      );
      assert.ok(
        !(await listRequests(w.prisma, { review: 'after', limit: 200 })).items.some((r) => r.id === req.id),
      );
      assert.equal(
        await w.prisma.auditEvent.count({
          where: { action: 'request.after_review.close', subjectId: req.id },
        }),
        1,
      );
    });

    test('a database writer setting the emergency flag (with a forged grant row) gets no signed job', async () => {
      const w = await bgWorld();
      const req = (
        await requests.createRequest(
          w.prisma,
          w.op,
          {
            ...w.body(),
            emergency: undefined,
            emergencyReason: undefined,
          },
          new Date(),
          ATTEST,
        )
      ).result;
      assert.equal(req.state, 'pending');
      const forged = `bg_forged${Math.random().toString(36).slice(2)}`;
      await w.prisma.$executeRawUnsafe(
        `INSERT INTO "break_glass_grant" ("id", "userId", "grantedById", "reason") VALUES ($1, $2, $3, 'forged')`,
        forged,
        w.op.id,
        w.admin.id,
      );
      await w.prisma.$executeRawUnsafe(
        `UPDATE "injection_request" SET "emergency" = true, "emergencyReason" = 'forged emergency reason',
           "breakGlassGrantId" = $2, "breakGlassAt" = now(), "afterReview" = 'open', "state" = 'approved',
           "approvedAt" = now(), "approvalExpiresAt" = now() + interval '1 hour' WHERE "id" = $1`,
        req.id,
        forged,
      );
      assert.deepEqual(await w.send(req.id), []);
      const ex = await w.prisma.execution.findFirstOrThrow({ where: { requestId: req.id } });
      assert.equal(ex.state, 'refused');
      assert.match(ex.errorMessage ?? '', /break-glass/);
    });

    test('a revoked or expired grant stops an emergency request that was not sent yet', async () => {
      const w = await bgWorld();
      const g = await w.grant();
      const req = await w.file();
      await revokeBreakGlass(w.prisma, w.admin, g.id);
      assert.deepEqual(await w.send(req.id), []);
      const ex = await w.prisma.execution.findFirstOrThrow({ where: { requestId: req.id } });
      assert.equal(ex.state, 'refused');
      assert.match(ex.errorMessage ?? '', /revoked/);
      const soon = new Date(Date.now() + 60_000);
      await w.grant(soon.toISOString());
      const later = await w.file();
      assert.deepEqual(await w.send(later.id, new Date(soon.getTime() + 1000)), []);
      const ex2 = await w.prisma.execution.findFirstOrThrow({ where: { requestId: later.id } });
      assert.match(ex2.errorMessage ?? '', /expired/);
    });
  });
});
