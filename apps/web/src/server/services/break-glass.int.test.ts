/**
 * Break-glass (issue 11 item 4), played as the granted person, a colleague, and a database writer: it runs at
 * once without votes only under a signed, still-valid grant, is marked and audited, and waits for a second
 * person to close its review afterwards. Real databases (PGlite and PostgreSQL), real services, real keys.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CreateRequest } from '@pyreach/protocol/api';
import { closeAfterReview, grantBreakGlass, revokeBreakGlass } from './break-glass';
import * as dispatch from './dispatch';
import { AppError } from './errors';
import * as requests from './requests';
import { getRequest, listRequests } from './requests';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  testKeyPair,
} from '../../../../../test/support/services';

const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const ATTEST = testKeyPair();
const keys = { signing: testKeyPair(), attestation: ATTEST };

describeEachDatabase('break-glass: an emergency runs at once, marked, and is reviewed afterwards', (db) => {
  async function world() {
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
    const w = await world();
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
    const w = await world();
    const g = await w.grant();
    const req = await w.file();
    assert.equal(req.state, 'approved');
    assert.equal(req.emergency, true);
    assert.equal(req.afterReview, 'open');
    assert.equal(req.breakGlassGrantId, g.id);
    const plain = (
      await requests.createRequest(w.prisma, w.op, {
        ...w.body(),
        emergency: undefined,
        emergencyReason: undefined,
      })
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
    await assert.rejects(closeAfterReview(w.prisma, ap, req.id, { comment: 'again' }), code('INVALID_STATE'));
    assert.ok(
      !(await listRequests(w.prisma, { review: 'after', limit: 200 })).items.some((r) => r.id === req.id),
    );
    assert.equal(
      await w.prisma.auditEvent.count({ where: { action: 'request.after_review.close', subjectId: req.id } }),
      1,
    );
  });

  test('a database writer setting the emergency flag (with a forged grant row) gets no signed job', async () => {
    const w = await world();
    const req = (
      await requests.createRequest(w.prisma, w.op, {
        ...w.body(),
        emergency: undefined,
        emergencyReason: undefined,
      })
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
    const w = await world();
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
