/**
 * The request page's pushes (issue 15 item 3): applied in order without a refetch, duplicates ignored, a gap or
 * what a push does not carry (an end, a changed record, an unknown execution) asks for one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestDetail, type ExecutionDetail } from '@pyreach/protocol/api';
import { OUTPUT_PREVIEW_BYTES } from '@pyreach/protocol/results';
import { executionStateCounts } from '@pyreach/protocol/states';
import { applyPush, queueAction, rebase, type Push } from './request-push';

const T = '2026-12-03T18:00:00.000Z';
const ID = 'req_1';

function execution(id: string, over: Partial<ExecutionDetail> = {}): ExecutionDetail {
  return {
    id,
    agentId: 'agent_1',
    pid: 100,
    startTime: '1',
    jobId: `job_${id}`,
    state: 'picked_up',
    errorCode: null,
    seq: 2,
    output: 'a\n',
    outputPreview: false,
    outputDigest: '0'.repeat(64),
    outputBytes: 2,
    outputDroppedBytes: null,
    process: null,
    result: null,
    errorMessage: null,
    error: null,
    thread: null,
    queuedBehind: null,
    leftoverThread: null,
    queuedAt: T,
    sentAt: T,
    stagedAt: T,
    pickedUpAt: T,
    finishedAt: null,
    ...over,
  };
}

function request(executions: ExecutionDetail[]): RequestDetail {
  // Parsed with the protocol's schema: the fixture is a request the API could answer.
  return RequestDetail.parse({
    id: ID,
    kind: 'custom',
    scriptId: null,
    code: 'print(1)',
    params: {},
    targets: { type: 'processes', processes: [{ agentId: 'agent_1', pid: 100, startTime: '1' }] },
    rollout: { concurrency: 10, maxFailures: 10 },
    options: {},
    contentHash: 'h',
    revision: 1,
    reason: 'r',
    state: 'dispatching',
    requiredApprovals: 1,
    approverRoles: ['approver'],
    approvalValidMinutes: 60,
    policyId: null,
    requesterId: 'u1',
    createdAt: T,
    updatedAt: T,
    approvedAt: T,
    approvalExpiresAt: null,
    dispatchedAt: T,
    cancelRequestedAt: null,
    completedAt: null,
    emergency: false,
    emergencyReason: null,
    breakGlassGrantId: null,
    afterReview: null,
    afterReviewById: null,
    afterReviewAt: null,
    afterReviewComment: null,
    reviews: [],
    approvals: 1,
    voidedReviews: 0,
    executions,
    executionCounts: executionStateCounts(executions.map((e) => e.state)),
  });
}

const out = (executionId: string, seq: number, chunk: string): Push => ({
  type: 'output',
  msg: { requestId: ID, executionId, seq, chunk },
});
const upd = (executionId: string, state: ExecutionDetail['state'], seq?: number): Push => ({
  type: 'update',
  msg: { requestId: ID, executionId, state, errorCode: null, ...(seq !== undefined ? { seq } : {}) },
});

describe('pushes applied to a fetched request', () => {
  it('applies output chunks in order and the state update of the same report changes nothing', () => {
    let r = request([execution('e1'), execution('e2')]);
    for (const [seq, chunk] of [
      [3, 'b\n'],
      [4, 'c\n'],
    ] as const) {
      const a = applyPush(r, out('e1', seq, chunk));
      assert.equal(a.refetch, null);
      r = a.request;
      const same = applyPush(r, upd('e1', 'picked_up', seq));
      assert.equal(same.refetch, null);
      assert.equal(same.request, r, 'the report already applied: the same object');
    }
    assert.equal(r.executions[0]!.output, 'a\nb\nc\n');
    assert.equal(r.executions[0]!.seq, 4);
    assert.equal(r.executions[1]!.output, 'a\n', 'the other execution untouched');
  });

  it('chunks grow the output up to the preview, then mark it a preview and hold no more', () => {
    let r = request([execution('e1', { seq: 0, output: '', outputBytes: 0 })]);
    const chunk = 'x'.repeat(1000) + '\n';
    for (let seq = 1; seq <= 10; seq++) r = applyPush(r, out('e1', seq, chunk)).request;
    const e = r.executions[0]!;
    assert.equal(e.seq, 10, 'every report is counted');
    assert.equal(e.outputPreview, true);
    assert.equal(e.output, chunk.repeat(10).slice(0, OUTPUT_PREVIEW_BYTES));
    const more = applyPush(r, out('e1', 11, 'more\n')).request.executions[0]!;
    assert.equal(more.output, e.output, 'past the preview nothing more is held');
    assert.equal(more.seq, 11);
    assert.equal(more.outputBytes, 10 * 1001 + 5, 'the bytes are still counted');
  });

  it('ignores a duplicate chunk and one the fetched record already holds', () => {
    const r = request([execution('e1', { seq: 5, output: 'x' })]);
    for (const seq of [1, 5]) {
      const a = applyPush(r, out('e1', seq, 'again'));
      assert.equal(a.request, r);
      assert.equal(a.refetch, null);
    }
  });

  it('a gap in the report sequence asks for a refetch and applies nothing', () => {
    const r = request([execution('e1')]);
    for (const p of [out('e1', 4, 'skipped one'), upd('e1', 'succeeded', 4)]) {
      const a = applyPush(r, p);
      assert.equal(a.refetch, 'gap');
      assert.equal(a.request, r);
    }
  });

  it('a state moves with its counts; an end asks for the result it does not carry', () => {
    const r = request([
      execution('e1', { state: 'sent', seq: 0 }),
      execution('e2', { state: 'sent', seq: 0 }),
    ]);
    const staged = applyPush(r, upd('e1', 'staged', 1));
    assert.equal(staged.refetch, null);
    assert.equal(staged.request.executions[0]!.state, 'staged');
    assert.equal(staged.request.executionCounts.staged, 1);
    assert.equal(staged.request.executionCounts.sent, 1);
    const ended = applyPush(staged.request, upd('e2', 'failed', 1));
    assert.equal(ended.refetch, 'execution-ended');
    assert.equal(ended.request.executionCounts.failed, 1);
  });

  it("the control plane's own transitions (no seq) apply by state, once", () => {
    const r = request([execution('e1', { state: 'queued', seq: 0 })]);
    const sent = applyPush(r, upd('e1', 'sent'));
    assert.equal(sent.refetch, null);
    assert.equal(sent.request.executions[0]!.state, 'sent');
    assert.equal(applyPush(sent.request, upd('e1', 'sent')).request, sent.request);
    assert.equal(applyPush(sent.request, upd('e1', 'agent_lost')).refetch, 'execution-ended');
  });

  it('request pushes: progress at the same state is nothing; a changed record or state is a refetch', () => {
    const r = request([execution('e1')]);
    const progress: Push = { type: 'request', msg: { requestId: ID, state: 'dispatching', progress: true } };
    assert.deepEqual(applyPush(r, progress), { request: r, refetch: null });
    const voted: Push = { type: 'request', msg: { requestId: ID, state: 'dispatching' } };
    assert.equal(applyPush(r, voted).refetch, 'record-changed');
    const ended: Push = { type: 'request', msg: { requestId: ID, state: 'succeeded', progress: true } };
    const a = applyPush(r, ended);
    assert.equal(a.refetch, 'record-changed');
    assert.equal(a.request.state, 'succeeded');
  });

  it("another request's pushes and an unknown execution", () => {
    const r = request([execution('e1')]);
    const other: Push = {
      type: 'output',
      msg: { requestId: 'req_2', executionId: 'e1', seq: 3, chunk: 'x' },
    };
    assert.deepEqual(applyPush(r, other), { request: r, refetch: null });
    assert.equal(applyPush(r, out('e9', 1, 'x')).refetch, 'unknown-execution');
  });

  it('a refetch keeps the pushes that arrived while it was read and drops the ones it holds', () => {
    const fetched = request([execution('e1', { seq: 3, output: 'a\nb\n' })]);
    const during = [out('e1', 3, 'b\n'), out('e1', 4, 'c\n')];
    const a = rebase(fetched, during);
    assert.equal(a.refetch, null);
    assert.equal(a.request.executions[0]!.output, 'a\nb\nc\n');
  });
});

describe('the approvals queue and request pushes', () => {
  const listed = new Set(['req_a']);
  it('ignores progress and requests it does not list; removes one that left pending; reads new or changed ones', () => {
    assert.equal(queueAction(listed, { requestId: 'req_b', state: 'dispatching', progress: true }), 'ignore');
    assert.equal(queueAction(listed, { requestId: 'req_b', state: 'succeeded' }), 'ignore');
    assert.equal(queueAction(listed, { requestId: 'req_a', state: 'approved' }), 'remove');
    assert.equal(
      queueAction(listed, { requestId: 'req_a', state: 'pending' }),
      'refetch',
      'a vote or an edit',
    );
    assert.equal(queueAction(listed, { requestId: 'req_c', state: 'pending' }), 'refetch', 'newly filed');
  });
});
