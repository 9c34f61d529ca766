/**
 * The control plane's side of issue 10 on real databases (PGlite and PostgreSQL): cancel means stop (job:cancel
 * for what runs, `cancelled` once the agent reported it stopped), late real results correcting our guesses,
 * reports the database refuses answered with a final code and recorded, the agent's `queued` event, and the
 * outbox backlog flag.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobEvent, ReportedResult } from '@pyreach/protocol/agent';
import { isRetryable } from '@pyreach/protocol/errors';
import { OUTBOX_BACKLOG_SECONDS } from '@pyreach/protocol/api';
import { getAgent, recordHeartbeat } from './agents';
import { verifyAuditChain } from './audit';
import { asAppError } from './errors';
import * as executions from './executions';
import * as requests from './requests';
import {
  describeEachDatabase,
  requestWorld,
  seedAgent,
  testKeyPair,
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

describeEachDatabase('cancel, corrections, refused reports, queue and backlog', (db) => {
  /** n targets under their own policy; `dispatched(c)`: an approved request over all of them, its first wave sent. */
  async function world(env: string, n: number) {
    const w = await requestWorld(db().prisma, { env, n, attestation: ATTEST });
    const dispatched = (concurrency: number) =>
      w.dispatched({ concurrency, reason: 'issue 10 control-plane paths' });
    return { ...w, dispatched };
  }

  test('cancelling a dispatching request tells the agent to stop what runs, and it ends cancelled once stopped', async () => {
    const w = await world('cancel-running', 3);
    const { req, sent } = await w.dispatched(2);
    const [running, waiting] = sent as [(typeof sent)[0], (typeof sent)[0]];
    await executions.applyJobEvent(w.prisma, w.agent.id, {
      type: 'state',
      jobId: running.jobId,
      seq: 1,
      at: at(),
      state: 'picked_up',
    });
    const cancelled = await requests.cancelRequest(w.prisma, w.op, req.id, 'wrong target');
    assert.equal(cancelled.result.state, 'dispatching', 'stays dispatching until the agent says it stopped');
    assert.ok(cancelled.result.cancelRequestedAt);
    const stops = cancelled.effects.filter((e) => e.kind === 'cancel-job');
    assert.deepEqual(
      stops.map((e) => (e.kind === 'cancel-job' ? e.jobId : '')).sort(),
      [running.jobId, waiting.jobId].sort(),
      'job:cancel for the picked-up and the sent job, through the Publisher',
    );
    assert.ok(stops.every((e) => e.kind === 'cancel-job' && e.agentId === w.agent.id));
    let detail = await requests.getRequest(w.prisma, req.id);
    assert.equal(
      detail.executions.filter((e) => e.state === 'cancelled').length,
      1,
      'the never-sent one is cancelled at once',
    );

    // The agent stopped the running code: `cancelled` with the output so far.
    const first = await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(running.jobId, 2, {
        status: 'cancelled',
        errorCode: 'CANCELLED',
        message:
          'the run was cancelled and its code was stopped inside the target; the output so far is kept',
        output: 'tick 1\ntick 2\n',
      }),
    );
    assert.ok(first.effects.some((e) => e.kind === 'request' && e.state === 'dispatching'));
    // The queued-on-the-agent one could not be interrupted (blocked in C): the leftover thread is kept.
    const last = await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(waiting.jobId, 1, {
        status: 'cancelled',
        errorCode: 'CANCELLED',
        message: 'cancelled, but the code could not be interrupted within 2000 ms (blocked in C code?)',
        output: '',
        leftoverThread: { tid: 4242, name: 'pyreach-run-1' },
      }),
    );
    assert.ok(last.effects.some((e) => e.kind === 'request' && e.state === 'cancelled'));
    detail = await requests.getRequest(w.prisma, req.id);
    assert.equal(detail.state, 'cancelled');
    const byJob = new Map(detail.executions.map((e) => [e.jobId, e]));
    assert.equal(byJob.get(running.jobId)!.state, 'cancelled');
    assert.equal(byJob.get(running.jobId)!.output, 'tick 1\ntick 2\n');
    assert.equal(byJob.get(running.jobId)!.leftoverThread, null);
    assert.deepEqual(byJob.get(waiting.jobId)!.leftoverThread, { tid: 4242, name: 'pyreach-run-1' });
    const actions = (
      await w.prisma.auditEvent.findMany({ where: { subjectId: req.id }, orderBy: { seq: 'asc' } })
    ).map((a) => a.action);
    assert.ok(actions.includes('request.cancel') && actions.includes('request.cancelled'), actions.join());
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('a cancel with nothing in flight ends the dispatching request at once', async () => {
    const w = await world('cancel-idle', 1);
    const { req, sent } = await w.dispatched(1);
    await executions.applyJobEvent(w.prisma, w.agent.id, result(sent[0]!.jobId, 1, { output: 'done\n' }));
    // Completed already: succeeded is final, a cancel is refused.
    await assert.rejects(requests.cancelRequest(w.prisma, w.op, req.id), /succeeded/);
    const w2 = await world('cancel-idle-2', 2);
    const d2 = await w2.dispatched(1);
    await executions.applyJobEvent(w2.prisma, w2.agent.id, result(d2.sent[0]!.jobId, 1, { output: 'x' }));
    const c = await requests.cancelRequest(w2.prisma, w2.op, d2.req.id);
    assert.equal(c.result.state, 'cancelled', 'one done, the other never sent: nothing left to stop');
    assert.equal(c.effects.filter((e) => e.kind === 'cancel-job').length, 0);
  });

  test('a late real result corrects an expired or agent_lost record, audited as a correction with both states', async () => {
    const w = await world('late', 2);
    const { req, sent } = await w.dispatched(2);
    const [a, b] = sent as [(typeof sent)[0], (typeof sent)[0]];
    await executions.applyJobEvent(w.prisma, w.agent.id, {
      type: 'state',
      jobId: a.jobId,
      seq: 1,
      at: at(),
      state: 'picked_up',
    });
    // b is never heard of before its envelope runs out; a's agent vanishes.
    await executions.expireOverdue(w.prisma, new Date(Date.now() + 24 * 3600_000));
    await w.prisma.agent.update({ where: { id: w.agent.id }, data: { status: 'offline' } });
    await executions.markAgentLost(w.prisma, w.agent.id);
    let detail = await requests.getRequest(w.prisma, req.id);
    assert.deepEqual(detail.executions.map((e) => e.state).sort(), ['agent_lost', 'expired']);
    // The agent comes back and its durable outbox delivers the truth.
    await executions.applyJobEvent(w.prisma, w.agent.id, result(a.jobId, 2, { output: 'real a\n' }));
    await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(b.jobId, 1, { status: 'failed', errorCode: 'USER_EXCEPTION', output: 'real b\n' }),
    );
    detail = await requests.getRequest(w.prisma, req.id);
    const byJob = new Map(detail.executions.map((e) => [e.jobId, e]));
    assert.equal(byJob.get(a.jobId)!.state, 'succeeded');
    assert.equal(byJob.get(a.jobId)!.output, 'real a\n');
    assert.equal(byJob.get(b.jobId)!.state, 'failed');
    assert.equal(byJob.get(b.jobId)!.errorCode, 'USER_EXCEPTION');
    const corrections = await w.prisma.auditEvent.findMany({
      where: { action: 'execution.correct', subjectId: { in: [a.id, b.id] } },
    });
    const pairs = corrections.map((c) => {
      const d = c.data as { from: string; to: string; jobId: string };
      return `${d.jobId === a.jobId ? 'a' : 'b'}:${d.from}→${d.to}`;
    });
    assert.deepEqual(pairs.sort(), ['a:agent_lost→succeeded', 'b:expired→failed']);
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('a request that failed on a guess is corrected to succeeded when the real outcome arrives, audited as such', async () => {
    const w = await world('late-request', 1);
    const { req, sent } = await w.dispatched(1);
    const job = sent[0]!;
    await executions.applyJobEvent(w.prisma, w.agent.id, {
      type: 'state',
      jobId: job.jobId,
      seq: 1,
      at: at(),
      state: 'picked_up',
    });
    await w.prisma.agent.update({ where: { id: w.agent.id }, data: { status: 'offline' } });
    await executions.markAgentLost(w.prisma, w.agent.id);
    assert.equal((await requests.getRequest(w.prisma, req.id)).state, 'failed', 'known-bad for now');
    const applied = await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(job.jobId, 2, { output: 'real\n' }),
    );
    const detail = await requests.getRequest(w.prisma, req.id);
    assert.equal(detail.state, 'succeeded', 'request and execution tell the same story');
    assert.equal(detail.executions[0]!.state, 'succeeded');
    assert.ok(
      applied.effects.some((e) => e.kind === 'request' && e.state === 'succeeded'),
      'the correction is pushed',
    );
    const audit = await w.prisma.auditEvent.findMany({
      where: { action: 'request.correct', subjectId: req.id },
    });
    assert.equal(audit.length, 1);
    assert.deepEqual((audit[0]!.data as { from: string; to: string }).from, 'failed');
    assert.deepEqual((audit[0]!.data as { from: string; to: string }).to, 'succeeded');
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('a report the database refuses is answered with a final code, changes nothing, and is recorded', async () => {
    const w = await world('poison', 1);
    const { sent } = await w.dispatched(1);
    const job = sent[0]!;
    // A raw NUL that slipped past the gateway's safe-text validation (the service is called directly).
    const err = await executions
      .applyJobEvent(w.prisma, w.agent.id, {
        type: 'output',
        jobId: job.jobId,
        seq: 1,
        at: at(),
        chunk: 'a\0b',
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(err, 'PostgreSQL refuses U+0000');
    const { error } = asAppError(err);
    assert.equal(error.code, 'UNSTORABLE');
    assert.equal(isRetryable(error.code), false, 'the agent must not retry it forever');
    assert.match(error.userMessage, /SQLSTATE 22/);
    const row = await w.prisma.execution.findUniqueOrThrow({ where: { jobId: job.jobId } });
    assert.equal(row.lastSeq, 0, 'nothing half-written: the seq is still free for the substitute');
    assert.equal(row.output, '');
    const recorded = await executions.recordReportRefusal(
      w.prisma,
      w.agent.id,
      { jobId: job.jobId, seq: 1, type: 'output' },
      { code: error.code, message: `${error.userMessage}: a\0b\x1b[2J` },
    );
    assert.equal(recorded.result, true);
    const audit = await w.prisma.auditEvent.findFirstOrThrow({
      where: { action: 'execution.report_refused', subjectId: job.id },
    });
    const data = audit.data as { code: string; seq: number; message: string };
    assert.equal(data.code, 'UNSTORABLE');
    assert.equal(data.seq, 1);
    assert.ok(!/[\0\x1b]/.test(data.message), 'the reason is stored as safe text');
    // The agent's REPORT_REFUSED substitute takes the same seq and ends the execution honestly.
    await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(job.jobId, 1, {
        status: 'failed',
        errorCode: 'REPORT_REFUSED',
        message: 'the control plane refused report 1 (output): UNSTORABLE',
        output: '',
        refusedReport: { seq: 1, type: 'output', code: 'UNSTORABLE', message: 'refused' },
      }),
    );
    const ended = await w.prisma.execution.findUniqueOrThrow({ where: { jobId: job.jobId } });
    assert.equal(ended.state, 'failed');
    assert.equal(ended.errorCode, 'REPORT_REFUSED');
    // Another agent's job is not recorded against it.
    const other = await seedAgent(w.prisma, w.admin, {});
    assert.equal(
      (
        await executions.recordReportRefusal(
          w.prisma,
          other.id,
          { jobId: job.jobId, seq: 2, type: 'output' },
          {
            code: 'VALIDATION',
            message: 'x',
          },
        )
      ).result,
      false,
    );
  });

  test("the agent's queued event says which job it waits behind, until it starts", async () => {
    const w = await world('queued', 2);
    const { req, sent } = await w.dispatched(2);
    const [first, second] = sent as [(typeof sent)[0], (typeof sent)[0]];
    await executions.applyJobEvent(w.prisma, w.agent.id, {
      type: 'queued',
      jobId: second.jobId,
      seq: 1,
      at: at(),
      behindJobId: first.jobId,
      ahead: 1,
    });
    let ex = (await requests.getRequest(w.prisma, req.id)).executions.find((e) => e.jobId === second.jobId)!;
    assert.deepEqual(ex.queuedBehind, { jobId: first.jobId, requestId: req.id, ahead: 1 });
    await executions.applyJobEvent(w.prisma, w.agent.id, {
      type: 'state',
      jobId: second.jobId,
      seq: 2,
      at: at(),
      state: 'picked_up',
    });
    ex = (await requests.getRequest(w.prisma, req.id)).executions.find((e) => e.jobId === second.jobId)!;
    assert.equal(ex.queuedBehind, null);
  });

  test('a batch of reports is one transaction in report order; a poisoned one fails alone, never its batch-mates', async () => {
    const w = await world('batch', 4);
    const { req, sent } = await w.dispatched(4);
    const [a, b, c, d] = sent.map((e) => e.jobId) as [string, string, string, string];
    const other = await seedAgent(w.prisma, w.admin, {});
    const refused: number[] = [];
    const apply = (reports: executions.JobReport[]) =>
      executions.applyJobEvents(w.prisma, reports, { onBatchRefused: (_e, n) => refused.push(n) });
    const auditBefore = await w.prisma.auditEvent.count();
    // One job's pickup, chunk and result share the batch with other jobs' reports and refusals on their merits.
    const good = await apply([
      { agentId: w.agent.id, ev: { type: 'state', jobId: a, seq: 1, at: at(), state: 'picked_up' } },
      { agentId: w.agent.id, ev: { type: 'output', jobId: a, seq: 2, at: at(), chunk: 'a so far\n' } },
      { agentId: w.agent.id, ev: { type: 'output', jobId: c, seq: 3, at: at(), chunk: 'early' } },
      { agentId: other.id, ev: result(b, 1, { output: 'not mine' }) },
      { agentId: w.agent.id, ev: result('job_0000000000000000', 1, {}) },
      { agentId: w.agent.id, ev: result(a, 3, { output: 'a so far\nall of a\n' }) },
      { agentId: w.agent.id, ev: result(a, 2, {}) },
    ]);
    assert.deepEqual(refused, [], 'applied as one batch');
    const codes = good.map((v) => (v.ok ? v.outcome.result : asAppError(v.error).error.code));
    assert.deepEqual(codes, [
      'applied',
      'applied',
      'OUT_OF_ORDER',
      'FORBIDDEN',
      'NOT_FOUND',
      'applied',
      'duplicate',
    ]);
    const rowA = await w.prisma.execution.findUniqueOrThrow({ where: { jobId: a } });
    assert.equal(rowA.state, 'succeeded');
    assert.equal(rowA.lastSeq, 3);
    assert.equal(rowA.output, 'a so far\nall of a\n');
    for (const j of [b, c])
      assert.equal((await w.prisma.execution.findUniqueOrThrow({ where: { jobId: j } })).lastSeq, 0);
    const appended = await w.prisma.auditEvent.findMany({
      where: { seq: { gt: BigInt(auditBefore) } },
      orderBy: { seq: 'asc' },
    });
    assert.deepEqual(
      appended.map((e) => e.action),
      ['execution.pickup', 'execution.result'],
      'audited in report order, once each',
    );
    const last = good[5]!;
    assert.ok(last.ok);
    assert.deepEqual(
      last.outcome.effects.find((e) => e.kind === 'request'),
      { kind: 'request', requestId: req.id, state: 'dispatching', progress: true },
      'three executions still in flight: progress only, the record is the same',
    );

    // A report the database refuses (a raw NUL that slipped past the gateway) makes the batch fall back to one
    // transaction per report: it alone fails, UNSTORABLE; the others land, and the request completes.
    const mixed = await apply([
      { agentId: w.agent.id, ev: result(b, 1, { output: 'b\n' }) },
      { agentId: w.agent.id, ev: { type: 'output', jobId: c, seq: 1, at: at(), chunk: 'c\0' } },
      { agentId: w.agent.id, ev: result(d, 1, { output: 'd\n' }) },
    ]);
    assert.deepEqual(refused, [3], 'the refused batch was reported once');
    assert.deepEqual(
      mixed.map((v) => (v.ok ? v.outcome.result : asAppError(v.error).error.code)),
      ['applied', 'UNSTORABLE', 'applied'],
    );
    assert.equal((await w.prisma.execution.findUniqueOrThrow({ where: { jobId: c } })).lastSeq, 0);
    const [cEnd] = await apply([{ agentId: w.agent.id, ev: result(c, 1, { output: 'c\n' }) }]);
    assert.ok(cEnd?.ok);
    assert.deepEqual(
      cEnd.outcome.effects.find((e) => e.kind === 'request'),
      { kind: 'request', requestId: req.id, state: 'succeeded', progress: false },
      'the request ended: its record changed',
    );
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('an agent whose oldest outbox item is older than the threshold is flagged, with its depth', async () => {
    const w = await world('backlog', 0);
    const now = new Date();
    await recordHeartbeat(w.prisma, w.agent.id, { outboxDepth: 2, outboxOldestAgeSeconds: 5 }, now);
    let a = await getAgent(w.prisma, w.agent.id);
    assert.equal(a.backlog, false, 'a busy agent is not a backlog');
    assert.equal(a.outboxDepth, 2);
    await recordHeartbeat(
      w.prisma,
      w.agent.id,
      { outboxDepth: 7, outboxOldestAgeSeconds: OUTBOX_BACKLOG_SECONDS + 1 },
      now,
    );
    a = await getAgent(w.prisma, w.agent.id);
    assert.equal(a.backlog, true);
    assert.equal(a.outboxDepth, 7);
    assert.ok(a.outboxOldestAgeSeconds! >= OUTBOX_BACKLOG_SECONDS + 1);
    await recordHeartbeat(w.prisma, w.agent.id, { outboxDepth: 0, outboxOldestAgeSeconds: null }, now);
    assert.equal((await getAgent(w.prisma, w.agent.id)).backlog, false, 'drained');
  });
});
