/**
 * Issue 11 (governance integrity), items 1–4, as an insider or a database writer would try them: every finding
 * first reproduced, then held. Real databases (PGlite and PostgreSQL), real services, real keys.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CreateRequest } from '@pyreach/protocol/api';
import { verifyAnyJob } from '@pyreach/protocol/job';
import * as dispatch from './dispatch';
import type { Outcome } from './effects';
import { AppError } from './errors';
import { saveSnapshot } from './inventory';
import * as requests from './requests';
import { getRequest } from './requests';
import {
  testKeyPair,
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  snapshot,
  seedPolicy,
} from '../../../../../test/support/services';

const resultOf =
  <A extends unknown[], T>(f: (...a: A) => Promise<Outcome<T>>) =>
  async (...a: A): Promise<T> =>
    (await f(...a)).result;
const createRequest = resultOf(requests.createRequest);
const updateRequest = resultOf(requests.updateRequest);
const reviewRequest = resultOf(requests.reviewRequest);
const planExecutions = resultOf(dispatch.planExecutions);

const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const ATTEST = testKeyPair();
const SIGNING = testKeyPair();
const keys = { signing: SIGNING, attestation: ATTEST };
const uniq = () => Math.random().toString(36).slice(2, 10);
const fresh = () => ({ authenticatedAt: new Date(), attestation: ATTEST });

describeEachDatabase('governance: approvals bind exactly what runs', (db) => {
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

  async function twoVotePolicy(w: Awaited<ReturnType<typeof world>>, label: string) {
    await seedPolicy(
      w.prisma,
      {
        name: `two-${w.agent.id}`,
        matchLabels: { env: label },
        priority: 10,
        requiredApprovals: 2,
        allowCustomCode: true,
      },
      ATTEST,
    );
  }

  test('finding: after 1 of 2 votes, a PATCH of any job option or the rollout voids the vote', async () => {
    const w = await world({ env: 'hash' });
    await twoVotePolicy(w, 'hash');
    const patches = [
      { options: { budgetSeconds: 3600 } },
      { options: { backend: 'sys' as const } },
      { options: { inline: true } },
      { options: { pickupTimeoutSeconds: 600 } },
      { rollout: { concurrency: 1000, maxFailures: 10_000 } },
    ];
    for (const patch of patches) {
      const req = await createRequest(
        w.prisma,
        w.op,
        {
          kind: 'custom',
          code: 'print(1)',
          targets: w.targets,
          reason: 'a routine check',
        },
        new Date(),
        ATTEST,
      );
      await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
      assert.equal((await getRequest(w.prisma, req.id)).approvals, 1);
      const edited = await updateRequest(w.prisma, w.op, req.id, patch, new Date(), ATTEST);
      assert.notEqual(edited.contentHash, req.contentHash, `${JSON.stringify(patch)} changes the hash`);
      assert.equal(edited.revision, 2);
      const detail = await getRequest(w.prisma, req.id);
      assert.equal(detail.approvals, 0, `${JSON.stringify(patch)} voids the vote`);
      assert.equal(detail.voidedReviews, 1);
      assert.equal(
        (await reviewRequest(w.prisma, w.ap2, req.id, { decision: 'approve' }, fresh())).state,
        'pending',
        'one fresh vote is not two',
      );
    }
    // The reason alone is not what runs: it changes nothing that the votes bind.
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: w.targets,
        reason: 'a routine check',
      },
      new Date(),
      ATTEST,
    );
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    const reworded = await updateRequest(
      w.prisma,
      w.op,
      req.id,
      { reason: 'the same check, reworded' },
      new Date(),
      ATTEST,
    );
    assert.equal(reworded.contentHash, req.contentHash);
    assert.equal((await getRequest(w.prisma, req.id)).approvals, 1);
  });

  async function auditOf(
    prisma: Awaited<ReturnType<typeof world>>['prisma'],
    action: string,
    requestId: string,
  ) {
    const rows = await prisma.auditEvent.findMany({ where: { action }, orderBy: { seq: 'asc' } });
    return rows.filter((r) => JSON.stringify(r.data).includes(requestId));
  }

  test('finding: a database writer flips state=approved or inserts a vote row → nothing is signed, refusal audited', async () => {
    const w = await world({ env: `dbw-${uniq()}` });
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print("owned")',
        targets: w.targets,
        reason: 'nobody approved this',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(req.state, 'pending');
    await w.prisma.$executeRawUnsafe(
      `UPDATE "injection_request" SET "state" = 'approved', "approvedAt" = now(), "approvalExpiresAt" = now() + interval '1 hour' WHERE "id" = $1`,
      req.id,
    );
    const [ex] = await planExecutions(w.prisma, req.id);
    assert.deepEqual((await dispatch.sendWave(w.prisma, req.id, keys, () => true)).result, []);
    const held = await w.prisma.execution.findUniqueOrThrow({ where: { id: ex!.id } });
    assert.equal(held.state, 'awaiting_approval');
    assert.equal(held.errorCode, 'APPROVAL_REQUIRED');
    assert.equal((await auditOf(w.prisma, 'execution.await_approval', req.id)).length, 1);
    // A forged vote row: right request, right hash, an eligible role — but no attestation by the key.
    await w.prisma.$executeRawUnsafe(
      `INSERT INTO "review" ("id", "requestId", "reviewerId", "decision", "contentHash", "createdAt", "role", "attestation", "attestationKeyId")
       VALUES ($1, $2, $3, 'approve', $4, now(), 'approver', $5, $6)`,
      `rev_forged${uniq()}`,
      req.id,
      w.ap1.id,
      req.contentHash,
      Buffer.alloc(64).toString('base64'),
      ATTEST.keyId,
    );
    assert.deepEqual((await dispatch.sendWave(w.prisma, req.id, keys, () => true)).result, []);
    const later = await w.prisma.execution.findUniqueOrThrow({ where: { id: ex!.id } });
    assert.equal(later.state, 'awaiting_approval');
    assert.match(later.errorMessage ?? '', /without a valid attestation/);
    // (A copied database under another key signs nothing either: its policy seal no longer verifies, and the
    // execution is refused — policy-seal.int.test.ts.)
    // A real vote, cast while the request is partly dispatched, lets it go — in a v2 envelope that says why.
    const voted = await reviewRequest(w.prisma, w.ap2, req.id, { decision: 'approve' }, fresh());
    assert.equal(voted.state, 'dispatching');
    const [job] = (
      await dispatch.sendWave(
        w.prisma,
        req.id,
        keys,
        () => true,
        new Date(),
        () => 2,
      )
    ).result;
    assert.ok(job, 'sent once a real, attested approval exists');
    const v = verifyAnyJob(job.envelope, SIGNING.publicKey);
    assert.ok(v.ok && v.version === 2);
    assert.equal(v.payload.contentHash, req.contentHash);
    const vote = await w.prisma.review.findFirstOrThrow({
      where: { requestId: req.id, reviewerId: w.ap2.id },
    });
    assert.deepEqual(v.payload.approvals, [vote.id]);
    const send = await w.prisma.auditEvent.findFirstOrThrow({
      where: { action: 'execution.send', subjectId: ex!.id },
    });
    assert.match(JSON.stringify(send.data), new RegExp(vote.id));
  });

  test('finding: content changed behind the service (raw UPDATE of code) is refused at dispatch', async () => {
    const w = await world({ env: `raw-${uniq()}` });
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: w.targets,
        reason: 'approved code',
      },
      new Date(),
      ATTEST,
    );
    await reviewRequest(w.prisma, w.ap1, req.id, { decision: 'approve' }, fresh());
    await w.prisma.$executeRawUnsafe(
      `UPDATE "injection_request" SET "code" = 'import os; os.system("id")' WHERE "id" = $1`,
      req.id,
    );
    const [ex] = await planExecutions(w.prisma, req.id);
    assert.deepEqual((await dispatch.sendWave(w.prisma, req.id, keys, () => true)).result, []);
    const held = await w.prisma.execution.findUniqueOrThrow({ where: { id: ex!.id } });
    assert.equal(held.state, 'awaiting_approval');
    assert.match(held.errorMessage ?? '', /does not match the hash/);
  });

  test('finding: a selector filed when nothing matched runs under the strictest policy of the host at dispatch', async () => {
    const tier = `prod-${uniq()}`;
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const op = await seedUser(prisma, 'operator');
    const ap1 = await seedUser(prisma, 'approver');
    const ap2 = await seedUser(prisma, 'approver');
    await seedPolicy(
      prisma,
      {
        name: `strict-${tier}`,
        matchLabels: { tier },
        priority: 100,
        requiredApprovals: 2,
        allowCustomCode: false,
      },
      ATTEST,
    );
    const selector = { type: 'selector' as const, labels: { app: tier }, process: {} };
    // Filed while no host matches: the selector's own labels fall under the default policy (1, custom allowed).
    const custom = await createRequest(
      prisma,
      op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: selector,
        reason: 'while nothing matched',
      },
      new Date(),
      ATTEST,
    );
    const lib = await createRequest(
      prisma,
      op,
      {
        kind: 'library',
        scriptId: 'logging.set_level',
        params: { logger: 'demo.orders', level: 'DEBUG' },
        targets: selector,
        reason: 'while nothing matched',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(custom.requiredApprovals, 1);
    await reviewRequest(prisma, ap1, custom.id, { decision: 'approve' }, fresh());
    assert.equal(
      (await reviewRequest(prisma, ap1, lib.id, { decision: 'approve' }, fresh())).state,
      'approved',
    );
    // Then a tier=prod host running the app appears (labels from its join token).
    await seedAgent(prisma, admin, { labels: { tier, app: tier }, processes: [pyProcess(300)] });
    // Custom code where the host's policy forbids it: refused, visibly, never run under the weaker policy.
    const [cx] = await planExecutions(prisma, custom.id);
    assert.deepEqual((await dispatch.sendWave(prisma, custom.id, keys, () => true)).result, []);
    const refused = await prisma.execution.findUniqueOrThrow({ where: { id: cx!.id } });
    assert.equal(refused.state, 'refused');
    assert.equal(refused.errorCode, 'POLICY_DENIED');
    assert.equal((await auditOf(prisma, 'execution.dispatch_refuse', custom.id)).length, 1);
    assert.equal((await getRequest(prisma, custom.id)).state, 'failed');
    // A library script: waits for the second approval the host's policy needs, then runs.
    const [lx] = await planExecutions(prisma, lib.id);
    assert.deepEqual((await dispatch.sendWave(prisma, lib.id, keys, () => true)).result, []);
    assert.equal(
      (await prisma.execution.findUniqueOrThrow({ where: { id: lx!.id } })).state,
      'awaiting_approval',
    );
    const detail = await getRequest(prisma, lib.id);
    assert.equal(detail.executions[0]!.state, 'awaiting_approval');
    assert.equal(detail.executions[0]!.errorCode, 'APPROVAL_REQUIRED', 'the API shows why');
    await assert.rejects(
      reviewRequest(prisma, ap1, lib.id, { decision: 'approve' }, fresh()),
      code('ALREADY_VOTED'),
    );
    await reviewRequest(prisma, ap2, lib.id, { decision: 'approve' }, fresh());
    const [job] = (await dispatch.sendWave(prisma, lib.id, keys, () => true)).result;
    assert.ok(job, 'sent after the second approval');
    const v = verifyAnyJob(job.envelope, SIGNING.publicKey);
    assert.ok(v.ok && v.version === 1, 'a v1 agent gets a v1 envelope');
  });

  test('finding: agent-reported labels never decide policy (token tier=prod, reports sandbox=yes)', async () => {
    const tier = `prod-${uniq()}`;
    const sandbox = `yes-${uniq()}`;
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    await seedPolicy(
      prisma,
      {
        name: `sandbox-${sandbox}`,
        matchLabels: { sandbox },
        priority: 500,
        requiredApprovals: 0,
        allowCustomCode: true,
      },
      ATTEST,
    );
    await seedPolicy(
      prisma,
      {
        name: `prod-${tier}`,
        matchLabels: { tier },
        priority: 100,
        requiredApprovals: 2,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const agent = await seedAgent(prisma, admin, { labels: { tier }, processes: [pyProcess(400)] });
    // The agent's inventory claims sandbox=yes (and tries to drop tier).
    await saveSnapshot(prisma, agent.id, snapshot(agent.name, [pyProcess(400)], { sandbox, tier: 'dev' }));
    const row = await prisma.agent.findUniqueOrThrow({ where: { id: agent.id } });
    assert.deepEqual(row.labels, { tier });
    assert.deepEqual(row.reportedLabels, { sandbox, tier: 'dev' });
    const op = await seedUser(prisma, 'operator');
    const req = await createRequest(
      prisma,
      op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: { type: 'processes', processes: [{ agentId: agent.id, pid: 400, startTime: '1400' }] },
        reason: 'sandbox, says the agent',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(req.state, 'pending');
    assert.equal(req.requiredApprovals, 2);
  });

  test('no one alone: a 0-approval policy covers only read-only, non-sensitive library scripts', async () => {
    const env = `zero-${uniq()}`;
    const w = await world({ env });
    await seedPolicy(
      w.prisma,
      {
        name: `zero-${env}`,
        matchLabels: { env },
        priority: 100,
        requiredApprovals: 0,
        approverRoles: [],
        allowCustomCode: true,
      },
      ATTEST,
    );
    const file = (over: Pick<CreateRequest, 'kind' | 'code' | 'scriptId' | 'params'>) =>
      createRequest(
        w.prisma,
        w.admin,
        { targets: w.targets, reason: 'the admin alone', ...over },
        new Date(),
        ATTEST,
      );
    const custom = await file({ kind: 'custom', code: 'print(1)' });
    assert.equal(custom.state, 'pending', 'custom code needs a second person');
    assert.equal(custom.requiredApprovals, 1);
    assert.deepEqual(custom.approverRoles, ['approver', 'admin']);
    const info = await file({ kind: 'library', scriptId: 'interpreter.info' });
    assert.equal(info.state, 'pending', 'interpreter.info returns argv: sensitive');
    const setLevel = await file({
      kind: 'library',
      scriptId: 'logging.set_level',
      params: { logger: 'x', level: 'DEBUG' },
    });
    assert.equal(setLevel.state, 'pending', 'not read-only');
    const stats = await file({ kind: 'library', scriptId: 'gc.stats' });
    assert.equal(stats.state, 'approved', 'read-only and non-sensitive');
    await assert.rejects(
      reviewRequest(w.prisma, w.admin, custom.id, { decision: 'approve' }, fresh()),
      code('SELF_APPROVAL'),
    );
  });

  test('policies match on the action: script id, risk, custom vs library', async () => {
    const env = `act-${uniq()}`;
    const w = await world({ env });
    await seedPolicy(
      w.prisma,
      {
        name: `custom-${env}`,
        matchLabels: { env },
        matchAction: { kinds: ['custom'] },
        priority: 100,
        requiredApprovals: 3,
        allowCustomCode: true,
      },
      ATTEST,
    );
    await seedPolicy(
      w.prisma,
      {
        name: `stats-${env}`,
        matchLabels: { env },
        matchAction: { scripts: ['gc.stats'] },
        priority: 90,
        requiredApprovals: 0,
      },
      ATTEST,
    );
    const custom = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: w.targets,
        reason: 'custom',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(custom.requiredApprovals, 3);
    const stats = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'library',
        scriptId: 'gc.stats',
        targets: w.targets,
        reason: 'stats',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(stats.state, 'approved');
    const other = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'library',
        scriptId: 'threads.dump_stacks',
        targets: w.targets,
        reason: 'stacks',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(other.requiredApprovals, 1, 'neither matches: the default policy');
  });
});
