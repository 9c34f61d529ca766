/**
 * What a service call changed, as values: the service that made a change says so, and one Publisher (../publisher.ts)
 * turns these into /ui pushes, agent commands and dispatcher wake-ups after the transaction committed. Nothing
 * else pushes or wakes, and no caller reads the database again to find out what happened.
 */
import type { ExecutionState, InspectionState, RequestState } from '@pyreach/protocol/states';

/** Why the dispatcher should look for work now (the ones in CLUSTER_WAKES also wake the other replicas). */
export type WakeReason =
  | 'approved'
  | 'cancelled'
  | 'job-finished'
  | 'agent-lost'
  | 'agent-ready'
  | 'inspect'
  | 'restore'
  | 'timer'
  | 'start'
  | 'again'
  | `remote:${string}`;

/**
 * Seconds an execution spent in a stage, told once, by the transition that ends it: `dispatch` planned (queued)
 * → sent, `pickup` sent → picked up by the target, `run` picked up → finished (any end).
 */
export interface ExecutionTimings {
  dispatchSeconds?: number;
  pickupSeconds?: number;
  runSeconds?: number;
}

/** Seconds from `from` to `to`, never negative (an agent's clock may run behind ours); undefined without both. */
export function secondsBetween(
  from: Date | null | undefined,
  to: Date | null | undefined,
): number | undefined {
  if (!from || !to) return undefined;
  return Math.max(0, (to.getTime() - from.getTime()) / 1000);
}

export type Effect =
  /** A request's state (or what it shows) changed. */
  | {
      kind: 'request';
      requestId: string;
      state: RequestState;
      /** Only its executions moved (an agent report): the record is the same unless the state differs. */
      progress?: boolean;
    }
  /** An execution's state changed. */
  | {
      kind: 'execution';
      requestId: string;
      executionId: string;
      state: ExecutionState;
      errorCode: string | null;
      /** The agent report that moved it (its place in the execution's report sequence); none for our own. */
      seq?: number;
      /** Set on the transition that ends an interval (the latency histograms of server/metrics.ts). */
      timings?: ExecutionTimings;
    }
  /** An agent reported output for an execution. */
  | { kind: 'output'; requestId: string; executionId: string; seq: number; chunk: string }
  /** An inspection moved (its job queued, sent, or answered). */
  | { kind: 'inspection'; inspectionId: string; state: InspectionState }
  /** Hosts, agents or their processes changed. */
  | { kind: 'fleet'; hostId: string | null }
  /** A running (or agent-queued) job must stop: `job:cancel` to its agent, wherever it is connected. */
  | { kind: 'cancel-job'; agentId: string; jobId: string }
  /** An agent was revoked: tell it and drop its connections on every replica. */
  | { kind: 'agent-revoked'; agentId: string; reason: string }
  /** An API token was revoked: drop the /ui sockets opened with it, on every replica. */
  | { kind: 'token-revoked'; tokenId: string }
  /**
   * A person's sessions ended (disabled, temporary password, role change) or one session did (sign-out): close
   * their live /ui sockets on every replica now, not at the next reconnect.
   */
  | { kind: 'sessions-closed'; userId: string; sessionId?: string; reason: string }
  /** There may be work to dispatch. */
  | { kind: 'wake'; why: WakeReason };

/** A mutating service's answer: what it returns to its caller, and what changed. */
export interface Outcome<T> {
  result: T;
  effects: Effect[];
}

export function outcome<T>(result: T, effects: (Effect | false | null | undefined)[] = []): Outcome<T> {
  return { result, effects: effects.filter((e): e is Effect => !!e) };
}

export function isOutcome(value: unknown): value is Outcome<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    'result' in value &&
    Array.isArray((value as { effects?: unknown }).effects)
  );
}

export const requestChanged = (r: { id: string; state: string }): Effect => ({
  kind: 'request',
  requestId: r.id,
  state: r.state as RequestState,
});
