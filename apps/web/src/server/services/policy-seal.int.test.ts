/**
 * The policy seal (policy-seal.ts), played as a database writer would: editing, inserting or deleting a policy
 * row, forging or deleting the seal, or using another control plane's key, decides nothing — filing and preview
 * refuse (POLICY_DENIED saying why), dispatch refuses an approved request's execution (audited), nothing is
 * signed. What the control plane writes (an admin's policy, a confirmed change, the upgrade command) is sealed.
 * Real databases (PGlite and PostgreSQL), real services, real keys. The tests run in order on one database.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Outcome } from './effects';
import { AppError } from './errors';
import * as dispatch from './dispatch';
import { createPolicy, listPolicies, policyOf } from './policy';
import { FACTORY_POLICIES, policySetDigest, sealPolicySet } from './policy-seal';
import * as requests from './requests';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  testKeyPair,
} from '../../../../../test/support/services';

const resultOf =
  <A extends unknown[], T>(f: (...a: A) => Promise<Outcome<T>>) =>
  async (...a: A): Promise<T> =>
    (await f(...a)).result;
const reviewRequest = resultOf(requests.reviewRequest);
const planExecutions = resultOf(dispatch.planExecutions);

const ATTEST = testKeyPair();
const KEYS = { signing: testKeyPair(), attestation: ATTEST };
const fresh = () => ({ authenticatedAt: new Date(), attestation: ATTEST });
const denied = (why: RegExp) => (e: unknown) =>
  e instanceof AppError && e.code === 'POLICY_DENIED' && why.test(e.userMessage);

describeEachDatabase('policy seal: only policies the control plane wrote decide', (db) => {
  async function world(env: string) {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { labels: { env }, processes: [pyProcess(100)] });
    const op = await seedUser(prisma, 'operator');
    const targets = {
      type: 'processes' as const,
      processes: [{ agentId: agent.id, pid: 100, startTime: '1100' }],
    };
    const file = async (reason = 'look at the cache') =>
      (
        await requests.createRequest(
          prisma,
          op,
          { kind: 'custom', code: 'print(1)', targets, reason },
          new Date(),
          ATTEST,
        )
      ).result;
    const preview = () => requests.previewPolicy(prisma, { targets, kind: 'custom' }, ATTEST);
    return { prisma, admin, agent, op, targets, file, preview };
  }
  /** A policy stricter than the default (two approvals): an admin's write applies at once, sealed. */
  const strict = (env: string, name = `strict-${env}`) => ({
    name,
    matchLabels: { env },
    priority: 10,
    requiredApprovals: 2,
    allowCustomCode: true,
  });

  test('a fresh install: the migrated policies are the factory set, trusted without any seal', async () => {
    const w = await world('fresh');
    const rows = await listPolicies(w.prisma);
    assert.equal(
      policySetDigest(rows),
      policySetDigest(FACTORY_POLICIES),
      'FACTORY_POLICIES = the migration',
    );
    assert.equal(await w.prisma.policySeal.count(), 0);
    const req = await w.file();
    assert.deepEqual([req.state, req.policyId, req.requiredApprovals], ['pending', 'default', 1]);
  });

  test('attacker: a writer edits the default policy of an install never sealed → refused; put back → trusted', async () => {
    const w = await world('never-sealed');
    await w.prisma
      .$executeRaw`UPDATE "policy" SET "approverRoles" = ARRAY['operator'] WHERE "id" = 'default'`;
    await assert.rejects(w.file(), denied(/no control-plane seal/));
    await assert.rejects(w.preview(), denied(/no control-plane seal/));
    await w.prisma
      .$executeRaw`UPDATE "policy" SET "approverRoles" = ARRAY['approver', 'admin'] WHERE "id" = 'default'`;
    assert.equal((await w.file()).policyId, 'default');
  });

  test('attacker: once sealed, editing, inserting or deleting a policy row, or forging the seal, is refused', async () => {
    const w = await world('sealed');
    const { policy } = await createPolicy(w.prisma, w.admin, strict('sealed'), ATTEST);
    assert.ok(policy);
    const seal = await w.prisma.policySeal.findUniqueOrThrow({ where: { id: 1 } });
    assert.equal(seal.digest, policySetDigest(await listPolicies(w.prisma)));
    assert.equal((await w.file()).requiredApprovals, 2);
    const edited = /differ from what the control plane last sealed/;

    // Edit: one approval instead of two.
    await w.prisma.$executeRaw`UPDATE "policy" SET "requiredApprovals" = 1 WHERE "id" = ${policy.id}`;
    await assert.rejects(w.file(), denied(edited));
    await assert.rejects(w.preview(), denied(edited));
    await w.prisma.$executeRaw`UPDATE "policy" SET "requiredApprovals" = 2 WHERE "id" = ${policy.id}`;
    assert.equal((await w.file()).requiredApprovals, 2, 'the sealed rules again: trusted');

    // Insert: a looser policy that outranks the strict one.
    await w.prisma
      .$executeRaw`INSERT INTO "policy" ("id", "name", "matchLabels", "priority", "requiredApprovals", "allowCustomCode", "updatedAt")
      VALUES ('pol_planted', 'planted', '{"env":"sealed"}', 100, 1, true, now())`;
    await assert.rejects(w.file(), denied(edited));
    await w.prisma.$executeRaw`DELETE FROM "policy" WHERE "id" = 'pol_planted'`;
    assert.equal((await w.file()).requiredApprovals, 2);

    // Delete: the strict policy gone, the default (one approval) would apply.
    const row = await w.prisma.policy.findUniqueOrThrow({ where: { id: policy.id } });
    await w.prisma.policy.delete({ where: { id: policy.id } });
    await assert.rejects(w.file(), denied(edited));
    // A forged seal over the tampered set: its digest matches, its signature does not.
    await w.prisma.policySeal.update({
      where: { id: 1 },
      data: { digest: policySetDigest(await listPolicies(w.prisma)) },
    });
    await assert.rejects(w.file(), denied(/does not verify/));
    // Deleting the seal too: policies were written through the control plane (audited), so none is no excuse.
    await w.prisma.policySeal.delete({ where: { id: 1 } });
    await assert.rejects(w.file(), denied(/seal is missing although policies were written/));

    // The way back: the row restored, an admin runs the seal command (audited, saying what it sealed).
    const { matchLabels, matchAction } = policyOf(row);
    await w.prisma.policy.create({ data: { ...row, matchLabels, matchAction } });
    const sealed = await sealPolicySet(w.prisma, { type: 'system', name: 'seal-policies' }, ATTEST, policyOf);
    assert.ok(sealed.policies.includes(policy.id));
    const audit = await w.prisma.auditEvent.findFirstOrThrow({
      where: { action: 'policy.seal' },
      orderBy: { seq: 'desc' },
    });
    assert.equal((audit.data as { digest?: string }).digest, sealed.digest);
    assert.equal((await w.file()).requiredApprovals, 2);
  });

  test('attacker: policies tampered with after approval, or another control plane’s key → dispatch refuses, nothing signed', async () => {
    const w = await world('dispatch');
    const { policy } = await createPolicy(w.prisma, w.admin, strict('dispatch'), ATTEST);
    assert.ok(policy);
    const approved = async (reason: string) => {
      const req = await w.file(reason);
      for (const role of ['approver', 'approver'] as const)
        await reviewRequest(
          w.prisma,
          await seedUser(w.prisma, role),
          req.id,
          { decision: 'approve' },
          fresh(),
        );
      const [ex] = await planExecutions(w.prisma, req.id);
      assert.ok(ex);
      return { req, ex };
    };
    const refusedWith = async (executionId: string, why: RegExp) => {
      const ex = await w.prisma.execution.findUniqueOrThrow({ where: { id: executionId } });
      assert.deepEqual([ex.state, ex.errorCode], ['refused', 'POLICY_DENIED']);
      assert.match(ex.errorMessage ?? '', why);
      const audit = await w.prisma.auditEvent.findFirstOrThrow({
        where: { action: 'execution.dispatch_refuse', subjectId: executionId },
      });
      assert.match(String((audit.data as { reason?: string }).reason), why);
    };

    const a = await approved('tampered after approval');
    await w.prisma.$executeRaw`UPDATE "policy" SET "approvalValidMinutes" = 600 WHERE "id" = ${policy.id}`;
    assert.deepEqual((await dispatch.sendWave(w.prisma, a.req.id, KEYS, () => true)).result, []);
    await refusedWith(a.ex.id, /differ from what the control plane last sealed/);
    await w.prisma.$executeRaw`UPDATE "policy" SET "approvalValidMinutes" = 60 WHERE "id" = ${policy.id}`;

    // A copied database under another control plane's key: its seal does not verify there.
    const b = await approved('another key');
    const other = { signing: KEYS.signing, attestation: testKeyPair() };
    assert.deepEqual((await dispatch.sendWave(w.prisma, b.req.id, other, () => true)).result, []);
    await refusedWith(b.ex.id, /does not verify/);

    // Untouched: sent.
    const c = await approved('untouched');
    assert.equal((await dispatch.sendWave(w.prisma, c.req.id, KEYS, () => true)).result.length, 1);
  });

  test('two admins writing policies at once: the seal covers both writes', async () => {
    const w = await world('both');
    const other = await seedUser(w.prisma, 'admin');
    const before = (await w.prisma.policySeal.findUniqueOrThrow({ where: { id: 1 } })).version;
    const [p1, p2] = await Promise.all([
      createPolicy(w.prisma, w.admin, strict('both', 'both-1'), ATTEST),
      createPolicy(w.prisma, other, { ...strict('both', 'both-2'), priority: 20 }, ATTEST),
    ]);
    assert.ok(p1.policy && p2.policy);
    const seal = await w.prisma.policySeal.findUniqueOrThrow({ where: { id: 1 } });
    assert.equal(seal.version, before + 2n);
    assert.equal(seal.digest, policySetDigest(await listPolicies(w.prisma)));
    assert.equal((await w.file()).policyId, p2.policy.id);
  });
});
