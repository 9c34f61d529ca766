/**
 * Issue 16 item 4 (results by state) on real databases (PGlite and PostgreSQL, with the migration's CHECK): a
 * request whose targets partly succeeded ends `partially_succeeded`, its detail carries per-state counts in the
 * protocol's shape, and a late real result corrects it like a `failed` one.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { JobEvent, ReportedResult } from '@pyreach/protocol/agent';
import { RequestDetail } from '@pyreach/protocol/api';
import { verifyAuditChain } from './audit';
import * as dispatch from './dispatch';
import * as executions from './executions';
import * as requests from './requests';
import { loadOrCreateSigningKey } from './signing';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  testKeyPair,
  seedPolicy,
} from '../../../../../test/support/services';

const ATTEST = testKeyPair();
const at = () => new Date().toISOString();
const result = (jobId: string, seq: number, r: Partial<ReportedResult>): JobEvent => ({
  type: 'result',
  jobId,
  seq,
  at: at(),
  result: { status: 'succeeded', output: '', ...r },
});

describeEachDatabase('results by state', (db) => {
  /** An approved request over n targets of one agent, all sent at once. */
  async function dispatched(env: string, n: number) {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, {
      labels: { env },
      processes: Array.from({ length: n }, (_, i) => pyProcess(100 + i)),
    });
    await seedPolicy(prisma, {
      name: `p-${agent.id}`,
      matchLabels: { env },
      priority: 10,
      requiredApprovals: 1,
      allowCustomCode: true,
    });
    const op = await seedUser(prisma, 'operator');
    const ap = await seedUser(prisma, 'approver');
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const { result: req } = await requests.createRequest(prisma, op, {
      kind: 'custom',
      code: 'print(1)',
      targets: {
        type: 'processes',
        processes: Array.from({ length: n }, (_, i) => ({
          agentId: agent.id,
          pid: 100 + i,
          startTime: String(1100 + i),
        })),
      },
      reason: 'issue 16 results by state',
      rollout: { concurrency: n, maxFailures: n },
    });
    await requests.reviewRequest(
      prisma,
      ap,
      req.id,
      { decision: 'approve' },
      { authenticatedAt: new Date(), attestation: ATTEST },
    );
    await dispatch.planExecutions(prisma, req.id);
    const sent = (
      await dispatch.sendWave(prisma, req.id, { signing: keys, attestation: ATTEST }, () => true)
    ).result.map((j) => j.execution);
    assert.equal(sent.length, n);
    return { prisma, agent, req, sent };
  }

  test('some succeeded, some not: partially_succeeded, with per-state counts in the API shape', async () => {
    const w = await dispatched('partial', 3);
    const [a, b, c] = w.sent as [(typeof w.sent)[0], (typeof w.sent)[0], (typeof w.sent)[0]];
    await executions.applyJobEvent(w.prisma, w.agent.id, result(a.jobId, 1, { output: 'ok\n' }));
    await executions.applyJobEvent(w.prisma, w.agent.id, result(b.jobId, 1, { output: 'ok\n' }));
    const last = await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(c.jobId, 1, { status: 'failed', errorCode: 'USER_EXCEPTION', output: 'boom\n' }),
    );
    assert.ok(
      last.effects.some((e) => e.kind === 'request' && e.state === 'partially_succeeded'),
      'the outcome is pushed to the page',
    );
    // As the route sends it (JSON) and the typed client parses it.
    const wire: unknown = JSON.parse(JSON.stringify(await requests.getRequest(w.prisma, w.req.id)));
    const detail = RequestDetail.parse(wire);
    assert.equal(detail.state, 'partially_succeeded', '2 of 3 succeeded is not `failed`');
    assert.equal(detail.executionCounts.succeeded, 2);
    assert.equal(detail.executionCounts.failed, 1);
    assert.equal(detail.executionCounts.queued, 0, 'every state is present');
    assert.equal(
      Object.values(detail.executionCounts).reduce((x, y) => x + y, 0),
      3,
      'the counts add up to the targets',
    );
    const audit = await w.prisma.auditEvent.findMany({
      where: { action: 'request.partially_succeed', subjectId: w.req.id },
    });
    assert.equal(audit.length, 1);
    assert.deepEqual(audit[0]!.data, { executions: { succeeded: 2, failed: 1 } });
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('none succeeded: failed; a late real result corrects it to partially_succeeded, then succeeded', async () => {
    const w = await dispatched('none-then-late', 2);
    const [a, b] = w.sent as [(typeof w.sent)[0], (typeof w.sent)[0]];
    for (const e of [a, b])
      await executions.applyJobEvent(w.prisma, w.agent.id, {
        type: 'state',
        jobId: e.jobId,
        seq: 1,
        at: at(),
        state: 'picked_up',
      });
    await w.prisma.agent.update({ where: { id: w.agent.id }, data: { status: 'offline' } });
    await executions.markAgentLost(w.prisma, w.agent.id);
    let detail = await requests.getRequest(w.prisma, w.req.id);
    assert.equal(detail.state, 'failed', 'nothing known to have succeeded');
    assert.equal(detail.executionCounts.agent_lost, 2);
    // The agent's outbox delivers the truth, one result at a time.
    await executions.applyJobEvent(w.prisma, w.agent.id, result(a.jobId, 2, { output: 'a\n' }));
    detail = await requests.getRequest(w.prisma, w.req.id);
    assert.equal(detail.state, 'partially_succeeded', 'one real success, one still lost');
    await executions.applyJobEvent(w.prisma, w.agent.id, result(b.jobId, 2, { output: 'b\n' }));
    detail = await requests.getRequest(w.prisma, w.req.id);
    assert.equal(detail.state, 'succeeded');
    assert.equal(detail.executionCounts.succeeded, 2);
    const moves = (
      await w.prisma.auditEvent.findMany({
        where: { action: 'request.correct', subjectId: w.req.id },
        orderBy: { seq: 'asc' },
      })
    ).map((e) => {
      const d = e.data as { from: string; to: string };
      return `${d.from}→${d.to}`;
    });
    assert.deepEqual(moves, ['failed→partially_succeeded', 'partially_succeeded→succeeded']);
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });
});
