import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AFTER_REVIEW,
  AfterReviewState,
  EXECUTION,
  ExecutionState,
  IN_FLIGHT_EXECUTION_STATES,
  REQUEST,
  RequestState,
  TERMINAL_EXECUTION_STATES,
  TERMINAL_REQUEST_STATES,
  canRequestTransition,
  canTransition,
  CORRECTABLE_EXECUTION_STATES,
  isFailedExecution,
  requestOutcome,
  executionStateCounts,
  stateLabel,
  INSPECTION,
  InspectionState,
  inspectionStatesBefore,
} from './states';
import { EngineStatus } from './exec';

const counts = (o: Partial<Record<ExecutionState, number>>) =>
  new Map(Object.entries(o) as [ExecutionState, number][]);

describe('the state table', () => {
  it('moves only to states that exist, and ends only in terminal ones', () => {
    for (const s of ExecutionState.options)
      for (const n of EXECUTION[s].next) assert.ok(ExecutionState.options.includes(n), `${s} → ${n}`);
    for (const s of RequestState.options)
      for (const n of REQUEST[s].next) assert.ok(RequestState.options.includes(n), `${s} → ${n}`);
  });

  it('never leaves a terminal state except agent_lost and expired, which the real outcome may still replace', () => {
    for (const s of TERMINAL_EXECUTION_STATES)
      if (!CORRECTABLE_EXECUTION_STATES.has(s)) assert.deepEqual(EXECUTION[s].next, [], `${s} is final`);
    assert.deepEqual([...CORRECTABLE_EXECUTION_STATES].sort(), ['agent_lost', 'expired']);
    assert.equal(canTransition('succeeded', 'failed'), false);
    for (const guess of CORRECTABLE_EXECUTION_STATES) {
      // Every end the engine can report replaces the guess; nothing the control plane concludes itself does.
      for (const s of EngineStatus.options) assert.equal(canTransition(guess, s), true, `${guess} → ${s}`);
      assert.equal(canTransition(guess, 'agent_lost'), false);
      assert.equal(canTransition(guess, 'expired'), false);
      assert.equal(canTransition(guess, 'picked_up'), false);
    }
    assert.equal(canTransition('queued', 'succeeded'), false, 'nothing succeeds without being sent');
    for (const s of TERMINAL_REQUEST_STATES)
      if (s !== 'failed' && s !== 'partially_succeeded')
        assert.deepEqual(REQUEST[s].next, [], `${s} is final`);
    // A request ended on a guess becomes what the real outcomes say; nothing else moves.
    assert.deepEqual(REQUEST.failed.next, ['succeeded', 'partially_succeeded']);
    assert.deepEqual(REQUEST.partially_succeeded.next, ['succeeded']);
  });

  it('lets a running execution end by what the target or the agent reports, a cancel the agent carried out included', () => {
    assert.deepEqual([...EXECUTION.picked_up.next].sort(), [
      'agent_lost',
      'cancelled',
      'failed',
      'succeeded',
      'target_gone',
    ]);
    assert.equal(canTransition('staged', 'cancelled'), true);
    assert.equal(canTransition('picked_up', 'cancelled'), true);
    assert.equal(canTransition('sent', 'cancelled'), true, 'cancelled while queued on the agent');
  });

  it('holds an execution awaiting_approval at dispatch: only from queued, out only to sent or an end, never in flight', () => {
    // In: a queued execution whose policy, resolved again right before signing, needs more approvals.
    assert.deepEqual(
      ExecutionState.options.filter((s) => canTransition(s, 'awaiting_approval')),
      ['queued'],
      'nothing already sent can be held back: its job is signed and out',
    );
    // Out: released once the extra votes are in (sent), or refused (custom code forbidden there, or rejected),
    // expired, cancelled with the request. Never straight to a result: it must be sent to run.
    assert.deepEqual([...EXECUTION.awaiting_approval.next].sort(), [
      'cancelled',
      'expired',
      'refused',
      'sent',
    ]);
    for (const end of ['succeeded', 'failed', 'picked_up', 'staged', 'agent_lost', 'queued'] as const)
      assert.equal(canTransition('awaiting_approval', end), false, `awaiting_approval → ${end}`);
    assert.equal(EXECUTION.awaiting_approval.terminal, false);
    assert.equal(
      EXECUTION.awaiting_approval.inFlight,
      false,
      'a held execution does not use rollout concurrency',
    );
    assert.equal(isFailedExecution('awaiting_approval'), false);
    assert.equal(stateLabel('awaiting_approval'), 'awaiting approval');
    // A request with a held execution has not ended, whatever the others did; a cancel waits for it too.
    assert.equal(requestOutcome(counts({ succeeded: 2, awaiting_approval: 1 })), null);
    assert.equal(requestOutcome(counts({ awaiting_approval: 1 }), { cancelRequested: true }), null);
    assert.equal(
      requestOutcome(counts({ succeeded: 2, refused: 1 })),
      'partially_succeeded',
      'held, then refused',
    );
    assert.equal(
      requestOutcome(counts({ cancelled: 1, succeeded: 1 }), { cancelRequested: true }),
      'cancelled',
    );
    // Its request is dispatching meanwhile, and may still end cancelled from there.
    assert.equal(canRequestTransition('dispatching', 'cancelled'), true);
  });

  it('can hold every engine status as an execution state', () => {
    for (const s of EngineStatus.options) assert.ok(ExecutionState.options.includes(s), s);
  });

  it('counts sent, staged and picked-up executions as in flight, and only those', () => {
    assert.deepEqual([...IN_FLIGHT_EXECUTION_STATES].sort(), ['picked_up', 'sent', 'staged']);
  });

  it('counts every bad end as a failure for the rollout, but not a cancel or a success', () => {
    for (const s of ['failed', 'pickup_timeout', 'target_gone', 'refused', 'agent_lost', 'expired'] as const)
      assert.equal(isFailedExecution(s), true, s);
    for (const s of ['succeeded', 'cancelled', 'queued', 'sent', 'picked_up'] as const)
      assert.equal(isFailedExecution(s), false, s);
  });

  it('lets requests move only along their lifecycle', () => {
    assert.equal(canRequestTransition('pending', 'approved'), true);
    assert.equal(canRequestTransition('approved', 'dispatching'), true);
    assert.equal(
      canRequestTransition('dispatching', 'cancelled'),
      true,
      'a cancelled dispatching request ends cancelled once its executions stopped',
    );
    assert.equal(canRequestTransition('rejected', 'approved'), false);
    assert.equal(canRequestTransition('pending', 'dispatching'), false, 'never dispatched unapproved');
  });

  it('derives a request outcome only once every execution has ended', () => {
    assert.equal(requestOutcome(counts({})), null, 'no executions: nothing to conclude');
    assert.equal(requestOutcome(counts({ succeeded: 2, picked_up: 1 })), null);
    assert.equal(requestOutcome(counts({ succeeded: 3 })), 'succeeded');
    assert.equal(requestOutcome(counts({ succeeded: 2, failed: 1 })), 'partially_succeeded');
    assert.equal(
      requestOutcome(counts({ succeeded: 1, cancelled: 1 })),
      'partially_succeeded',
      'not all of it ran',
    );
    assert.equal(requestOutcome(counts({ failed: 2, refused: 1 })), 'failed', 'none succeeded');
    assert.equal(
      requestOutcome(counts({ succeeded: 2, failed: 2, cancelled: 1 }), { rolloutStopped: true }),
      'failed',
      'a rollout stopped at its failure limit failed, whatever ran before',
    );
    assert.equal(requestOutcome(counts({ agent_lost: 1 })), 'failed', 'a lost agent is known-bad now');
  });

  it('counts executions per state, every state present', () => {
    const c = executionStateCounts(['succeeded', 'failed', 'succeeded']);
    assert.equal(c.succeeded, 2);
    assert.equal(c.failed, 1);
    assert.equal(c.queued, 0);
    assert.deepEqual(Object.keys(c).sort(), [...ExecutionState.options].sort());
  });

  it('ends partially_succeeded terminal, correctable to succeeded, reachable from dispatching and failed', () => {
    assert.equal(TERMINAL_REQUEST_STATES.has('partially_succeeded'), true);
    assert.equal(canRequestTransition('dispatching', 'partially_succeeded'), true);
    assert.equal(canRequestTransition('failed', 'partially_succeeded'), true);
    assert.equal(canRequestTransition('partially_succeeded', 'succeeded'), true);
    assert.equal(canRequestTransition('partially_succeeded', 'failed'), false);
    assert.equal(stateLabel('partially_succeeded'), 'partially succeeded');
  });

  it('ends a cancelled request cancelled, but only once every execution stopped', () => {
    const cancel = { cancelRequested: true };
    assert.equal(requestOutcome(counts({ cancelled: 1, picked_up: 1 }), cancel), null, 'one still running');
    assert.equal(requestOutcome(counts({ cancelled: 1, succeeded: 1 }), cancel), 'cancelled');
    assert.equal(requestOutcome(counts({}), cancel), 'cancelled', 'nothing was sent yet');
  });

  it('gives every state a label a person reads', () => {
    assert.equal(stateLabel('picked_up'), 'picked up');
    assert.equal(stateLabel('agent_lost'), 'agent lost');
    assert.equal(stateLabel('dispatching'), 'dispatching');
    for (const s of [...ExecutionState.options, ...RequestState.options]) assert.ok(stateLabel(s).length > 0);
  });
});

describe('the inspection states', () => {
  it('queued → sent → an end; every end final; expiry reaches an undelivered or unanswered one', () => {
    for (const s of InspectionState.options) {
      for (const n of INSPECTION[s].next) assert.ok(InspectionState.options.includes(n), `${s} → ${n}`);
      if (INSPECTION[s].terminal) assert.deepEqual(INSPECTION[s].next, [], `${s} is final`);
    }
    assert.deepEqual(inspectionStatesBefore('expired'), ['queued', 'sent']);
    // Only a sent job can be read: the agent never had a queued one.
    assert.deepEqual(inspectionStatesBefore('succeeded'), ['sent']);
  });
});

describe('the after-review states of a break-glass request', () => {
  it('open → closed, and closed is final: a closed review cannot be reopened or closed twice', () => {
    assert.deepEqual(AfterReviewState.options, ['open', 'closed']);
    assert.deepEqual(AFTER_REVIEW.open.next, ['closed']);
    assert.equal(AFTER_REVIEW.closed.terminal, true);
    assert.deepEqual(AFTER_REVIEW.closed.next, []);
  });
});
