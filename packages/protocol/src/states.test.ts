import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EXECUTION,
  ExecutionState,
  IN_FLIGHT_EXECUTION_STATES,
  REQUEST,
  RequestState,
  TERMINAL_EXECUTION_STATES,
  TERMINAL_REQUEST_STATES,
  canRequestTransition,
  canTransition,
  isFailedExecution,
  requestOutcome,
  stateLabel,
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

  it('never leaves a terminal state except agent_lost, which the real outcome may still replace', () => {
    for (const s of TERMINAL_EXECUTION_STATES)
      if (s !== 'agent_lost') assert.deepEqual(EXECUTION[s].next, [], `${s} is final`);
    assert.equal(canTransition('succeeded', 'failed'), false);
    assert.equal(canTransition('agent_lost', 'succeeded'), true);
    assert.equal(canTransition('agent_lost', 'cancelled'), false);
    assert.equal(canTransition('queued', 'succeeded'), false, 'nothing succeeds without being sent');
    for (const s of TERMINAL_REQUEST_STATES) assert.deepEqual(REQUEST[s].next, [], `${s} is final`);
  });

  it('lets a running execution end only by what the target or the agent reports (no cancel once picked up yet)', () => {
    assert.deepEqual([...EXECUTION.picked_up.next].sort(), [
      'agent_lost',
      'failed',
      'succeeded',
      'target_gone',
    ]);
    assert.equal(canTransition('staged', 'cancelled'), true);
    assert.equal(canTransition('picked_up', 'cancelled'), false);
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
      false,
      'a dispatching request ends by outcome',
    );
    assert.equal(canRequestTransition('rejected', 'approved'), false);
    assert.equal(canRequestTransition('pending', 'dispatching'), false, 'never dispatched unapproved');
  });

  it('derives a request outcome only once every execution has ended', () => {
    assert.equal(requestOutcome(counts({})), null, 'no executions: nothing to conclude');
    assert.equal(requestOutcome(counts({ succeeded: 2, picked_up: 1 })), null);
    assert.equal(requestOutcome(counts({ succeeded: 3 })), 'succeeded');
    assert.equal(requestOutcome(counts({ succeeded: 2, failed: 1 })), 'failed');
    assert.equal(requestOutcome(counts({ succeeded: 1, cancelled: 1 })), 'failed', 'not all of it ran');
    assert.equal(requestOutcome(counts({ agent_lost: 1 })), 'failed', 'a lost agent is known-bad now');
  });

  it('gives every state a label a person reads', () => {
    assert.equal(stateLabel('picked_up'), 'picked up');
    assert.equal(stateLabel('agent_lost'), 'agent lost');
    assert.equal(stateLabel('dispatching'), 'dispatching');
    for (const s of [...ExecutionState.options, ...RequestState.options]) assert.ok(stateLabel(s).length > 0);
  });
});
