/**
 * The one table of request and execution states: which exist, which moves are allowed, which are terminal,
 * how a request's outcome follows from its executions, and what a person reads for each. The services move
 * rows only along these edges, the dashboard renders from these labels and tones, and the database CHECKs
 * list the same names (prisma/migrations). Browser-safe: zod only.
 *
 * A new state is one entry here (plus its CHECK in a migration): e.g. an execution `cancelled` from a running
 * one is `picked_up.next` gaining 'cancelled'; a request `partially_succeeded` is one entry in REQUEST and one
 * line in `requestOutcome`; executions `awaiting_approval` is one entry with its edges; a late real result
 * correcting `expired` is `expired.next` gaining the result states (as `agent_lost` already has).
 */
import { z } from 'zod';

/** How a state reads at a glance (the dashboard maps tones to badge colours). */
export type StateTone = 'waiting' | 'active' | 'success' | 'failure' | 'warning' | 'neutral';

interface StateInfo<S extends string> {
  /** What a person reads. */
  label: string;
  tone: StateTone;
  /** No further move is expected (a `correctable` one may still be replaced by the truth). */
  terminal: boolean;
  /** Allowed next states. */
  next: readonly S[];
}

// ---- executions -----------------------------------------------------------------------------------------

/** Control-plane view of one target of a request. */
export const ExecutionState = z.enum([
  'queued',
  'awaiting_approval',
  'sent',
  'staged',
  'picked_up',
  'succeeded',
  'failed',
  'pickup_timeout',
  'target_gone',
  'refused',
  'agent_lost',
  'expired',
  'cancelled',
]);
export type ExecutionState = z.infer<typeof ExecutionState>;

/** What an ended execution counts as for its request and its rollout. */
export type ExecutionOutcome = 'success' | 'failure' | 'neutral';

interface ExecutionInfo extends StateInfo<ExecutionState> {
  /** Sent to an agent and not yet ended: counts against the rollout's concurrency. */
  inFlight: boolean;
  /** For terminal states: success, a failure (counts towards maxFailures), or neither (cancelled). */
  outcome: ExecutionOutcome | null;
}

/**
 * The agent-reported ends a job can have once it left the control plane (every engine status: a cancel the
 * agent carried out ends `cancelled`, with the output so far).
 */
const REPORTED_ENDS = [
  'succeeded',
  'failed',
  'pickup_timeout',
  'target_gone',
  'refused',
  'cancelled',
] as const;

export const EXECUTION: Readonly<Record<ExecutionState, ExecutionInfo>> = {
  queued: {
    label: 'queued',
    tone: 'neutral',
    terminal: false,
    inFlight: false,
    outcome: null,
    next: ['sent', 'awaiting_approval', 'refused', 'expired', 'cancelled', 'agent_lost'],
  },
  // Held at dispatch: the policy for its host, resolved again right before signing, needs more approvals than
  // the request has (the request keeps collecting votes while its other executions run). Owned by gov-approvals.
  awaiting_approval: {
    label: 'awaiting approval',
    tone: 'waiting',
    terminal: false,
    inFlight: false,
    outcome: null,
    next: ['sent', 'refused', 'expired', 'cancelled'],
  },
  sent: {
    label: 'sent',
    tone: 'active',
    terminal: false,
    inFlight: true,
    outcome: null,
    next: ['staged', 'picked_up', ...REPORTED_ENDS, 'agent_lost', 'expired', 'cancelled'],
  },
  staged: {
    label: 'staged',
    tone: 'active',
    terminal: false,
    inFlight: true,
    outcome: null,
    next: ['picked_up', ...REPORTED_ENDS, 'agent_lost', 'cancelled'],
  },
  picked_up: {
    label: 'picked up',
    tone: 'active',
    terminal: false,
    inFlight: true,
    outcome: null,
    // A cancel of running code is `job:cancel` to the agent; the execution ends `cancelled` when the agent
    // reports that the engine stopped it (or could not: then the result names the leftover thread).
    next: ['succeeded', 'failed', 'target_gone', 'cancelled', 'agent_lost'],
  },
  succeeded: {
    label: 'succeeded',
    tone: 'success',
    terminal: true,
    inFlight: false,
    outcome: 'success',
    next: [],
  },
  failed: { label: 'failed', tone: 'failure', terminal: true, inFlight: false, outcome: 'failure', next: [] },
  pickup_timeout: {
    label: 'pickup timeout',
    tone: 'warning',
    terminal: true,
    inFlight: false,
    outcome: 'failure',
    next: [],
  },
  target_gone: {
    label: 'target gone',
    tone: 'warning',
    terminal: true,
    inFlight: false,
    outcome: 'failure',
    next: [],
  },
  refused: {
    label: 'refused',
    tone: 'failure',
    terminal: true,
    inFlight: false,
    outcome: 'failure',
    next: [],
  },
  // Terminal-looking but correctable: the agent's durable outbox can deliver the real outcome after a
  // reconnect, and the truth beats our guess (audited as `execution.correct` with both states).
  agent_lost: {
    label: 'agent lost',
    tone: 'warning',
    terminal: true,
    inFlight: false,
    outcome: 'failure',
    next: [...REPORTED_ENDS],
  },
  // Our guess too (not picked up in time, as far as the control plane heard): a real result the agent still
  // delivers replaces it, audited as a correction.
  expired: {
    label: 'expired',
    tone: 'neutral',
    terminal: true,
    inFlight: false,
    outcome: 'failure',
    next: [...REPORTED_ENDS],
  },
  cancelled: {
    label: 'cancelled',
    tone: 'neutral',
    terminal: true,
    inFlight: false,
    outcome: 'neutral',
    next: [],
  },
};

const executionStates = ExecutionState.options;

export const TERMINAL_EXECUTION_STATES: ReadonlySet<ExecutionState> = new Set(
  executionStates.filter((s) => EXECUTION[s].terminal),
);

/** Sent and not ended: what a rollout's concurrency counts. */
export const IN_FLIGHT_EXECUTION_STATES: readonly ExecutionState[] = executionStates.filter(
  (s) => EXECUTION[s].inFlight,
);

/** Ended states the control plane concluded itself, which a real result from the agent may still replace. */
export const CORRECTABLE_EXECUTION_STATES: ReadonlySet<ExecutionState> = new Set(['agent_lost', 'expired']);

/** Whether an execution may move from `from` to `to`; anything else an agent reports is ignored, never applied. */
export function canTransition(from: ExecutionState, to: ExecutionState): boolean {
  return EXECUTION[from].next.includes(to);
}

/** Ended in a way that counts towards a rollout's `maxFailures` (and makes the request fail). */
export function isFailedExecution(state: ExecutionState): boolean {
  return EXECUTION[state].outcome === 'failure';
}

// ---- requests -------------------------------------------------------------------------------------------

export const RequestState = z.enum([
  'pending',
  'approved',
  'rejected',
  'cancelled',
  'expired',
  'dispatching',
  'succeeded',
  'partially_succeeded',
  'failed',
]);
export type RequestState = z.infer<typeof RequestState>;

export const REQUEST: Readonly<Record<RequestState, StateInfo<RequestState>>> = {
  pending: {
    label: 'pending',
    tone: 'waiting',
    terminal: false,
    next: ['approved', 'rejected', 'cancelled', 'expired'],
  },
  approved: {
    label: 'approved',
    tone: 'active',
    terminal: false,
    next: ['dispatching', 'cancelled', 'expired'],
  },
  // Cancelling a dispatching request cancels its queued executions and sends `job:cancel` for the running ones;
  // it stays dispatching until each has ended (the agent reports them `cancelled`, with their output so far),
  // then ends `cancelled` (requestOutcome's `cancelRequested`).
  dispatching: {
    label: 'dispatching',
    tone: 'active',
    terminal: false,
    next: ['succeeded', 'partially_succeeded', 'failed', 'cancelled'],
  },
  succeeded: { label: 'succeeded', tone: 'success', terminal: true, next: [] },
  // Some targets succeeded, the others did not (failed, refused, gone, lost, cancelled one by one): what ran
  // where it could. Correctable like `failed`: a late real result of an execution given up on may show that
  // every one succeeded after all.
  partially_succeeded: {
    label: 'partially succeeded',
    tone: 'warning',
    terminal: true,
    next: ['succeeded'],
  },
  // A request ends `failed` when no target succeeded, e.g. every execution was given up on (`agent_lost`,
  // `expired`: the control plane's guess); if the agent's durable outbox later delivers the real outcomes, the
  // request is corrected to what they show (`succeeded` or `partially_succeeded`, audited `request.correct`), so
  // request and executions tell one story.
  failed: { label: 'failed', tone: 'failure', terminal: true, next: ['succeeded', 'partially_succeeded'] },
  rejected: { label: 'rejected', tone: 'failure', terminal: true, next: [] },
  cancelled: { label: 'cancelled', tone: 'neutral', terminal: true, next: [] },
  expired: { label: 'expired', tone: 'neutral', terminal: true, next: [] },
};

export const TERMINAL_REQUEST_STATES: ReadonlySet<RequestState> = new Set(
  RequestState.options.filter((s) => REQUEST[s].terminal),
);

export function canRequestTransition(from: RequestState, to: RequestState): boolean {
  return REQUEST[from].next.includes(to);
}

/**
 * A dispatching request's end from how many of its executions are in each state: null while any has not
 * ended (or there are none, unless it was cancelled); `cancelled` once all ended after a cancel was asked for;
 * `succeeded` when every one succeeded; `partially_succeeded` when some did and some did not; `failed` when
 * none did, or when its rollout stopped at its failure limit before reaching every target (`rolloutStopped`:
 * the operator's own threshold said the change is bad, whatever ran before).
 */
export function requestOutcome(
  counts: ReadonlyMap<ExecutionState, number>,
  opts: { cancelRequested?: boolean; rolloutStopped?: boolean } = {},
): Extract<RequestState, 'succeeded' | 'partially_succeeded' | 'failed' | 'cancelled'> | null {
  let total = 0;
  let ended = 0;
  for (const [state, n] of counts) {
    total += n;
    if (EXECUTION[state].terminal) ended += n;
  }
  if (ended !== total) return null;
  if (opts.cancelRequested) return 'cancelled';
  if (total === 0) return null;
  const ok = counts.get('succeeded') ?? 0;
  if (ok === total) return 'succeeded';
  return ok > 0 && !opts.rolloutStopped ? 'partially_succeeded' : 'failed';
}

/** How many executions are in each state, every state present (0 where none): the per-state counts. */
export function executionStateCounts(states: Iterable<ExecutionState>): Record<ExecutionState, number> {
  const out = Object.fromEntries(executionStates.map((s) => [s, 0])) as Record<ExecutionState, number>;
  for (const s of states) out[s] += 1;
  return out;
}

// ---- inspections ----------------------------------------------------------------------------------------

/**
 * One `process:inspect` (nothing runs in the target): its signed job waits `queued` until the replica holding the
 * agent's connection claims it `sent`; the agent's report ends it, or its job's notAfter does (`expired`).
 */
export const InspectionState = z.enum(['queued', 'sent', 'succeeded', 'failed', 'refused', 'expired']);
export type InspectionState = z.infer<typeof InspectionState>;

export const INSPECTION: Readonly<Record<InspectionState, StateInfo<InspectionState>>> = {
  queued: {
    label: 'queued',
    tone: 'waiting',
    terminal: false,
    next: ['sent', 'refused', 'failed', 'expired'],
  },
  sent: {
    label: 'reading',
    tone: 'active',
    terminal: false,
    next: ['succeeded', 'failed', 'refused', 'expired'],
  },
  succeeded: { label: 'read', tone: 'success', terminal: true, next: [] },
  failed: { label: 'failed', tone: 'failure', terminal: true, next: [] },
  refused: { label: 'refused', tone: 'failure', terminal: true, next: [] },
  expired: { label: 'expired', tone: 'warning', terminal: true, next: [] },
};

/** Inspection states an ending may leave (every state whose `next` holds `to`). */
export function inspectionStatesBefore(to: InspectionState): InspectionState[] {
  return InspectionState.options.filter((s) => INSPECTION[s].next.includes(to));
}

// ---- restore runs ---------------------------------------------------------------------------------------

/**
 * A follow-up of an approved change that undoes itself (`logging.set_level` with a duration): the read at its
 * expiry (`check`) or "Restore now" (`now`). `scheduled` until due and claimed `sent` once by the replica holding
 * the agent's connection; the agent's report ends it; one not delivered in time ends `expired` (housekeeping).
 * What the target said is the run's `outcome` (RestoreOutcome).
 */
export const RestoreRunState = z.enum(['scheduled', 'sent', 'succeeded', 'failed', 'refused', 'expired']);
export type RestoreRunState = z.infer<typeof RestoreRunState>;

export const RESTORE_RUN: Readonly<Record<RestoreRunState, StateInfo<RestoreRunState>>> = {
  scheduled: {
    label: 'scheduled',
    tone: 'waiting',
    terminal: false,
    next: ['sent', 'refused', 'expired'],
  },
  sent: {
    label: 'running',
    tone: 'active',
    terminal: false,
    next: ['succeeded', 'failed', 'refused', 'expired'],
  },
  succeeded: { label: 'done', tone: 'success', terminal: true, next: [] },
  failed: { label: 'failed', tone: 'failure', terminal: true, next: [] },
  refused: { label: 'refused', tone: 'failure', terminal: true, next: [] },
  expired: { label: 'expired', tone: 'warning', terminal: true, next: [] },
};

/** Restore-run states an ending may leave (every state whose `next` holds `to`). */
export function restoreRunStatesBefore(to: RestoreRunState): RestoreRunState[] {
  return RestoreRunState.options.filter((s) => RESTORE_RUN[s].next.includes(to));
}

/**
 * What a target said about one restore: every level back (`restored`), some left alone because someone else
 * changed them meanwhile (`changed`), taken over by a later change of the same logger (`superseded`), not yet
 * due in the target (`pending`), no such change there (`unknown`), the process gone (`target_gone`), or the run
 * itself failed (`failed`).
 */
export const RestoreOutcome = z.enum([
  'restored',
  'changed',
  'superseded',
  'pending',
  'unknown',
  'target_gone',
  'failed',
]);
export type RestoreOutcome = z.infer<typeof RestoreOutcome>;

export const RESTORE_OUTCOME: Readonly<Record<RestoreOutcome, { label: string; tone: StateTone }>> = {
  restored: { label: 'restored', tone: 'success' },
  changed: { label: 'changed by someone else: left alone', tone: 'warning' },
  superseded: { label: 'taken over by a later change', tone: 'neutral' },
  pending: { label: 'not yet restored', tone: 'waiting' },
  unknown: { label: 'no such change in the process', tone: 'warning' },
  target_gone: { label: 'target gone', tone: 'warning' },
  failed: { label: 'check failed', tone: 'failure' },
};

/**
 * A break-glass request's review afterwards: `open` from filing (it ran without votes) until a second person —
 * not the requester, an approver or admin — closes it with a comment. Not break-glass: no after-review at all.
 */
export const AfterReviewState = z.enum(['open', 'closed']);
export type AfterReviewState = z.infer<typeof AfterReviewState>;

export const AFTER_REVIEW: Readonly<Record<AfterReviewState, StateInfo<AfterReviewState>>> = {
  open: { label: 'needs review afterwards', tone: 'warning', terminal: false, next: ['closed'] },
  closed: { label: 'reviewed afterwards', tone: 'success', terminal: true, next: [] },
};

/** A person's word for a state (request or execution). */
export function stateLabel(state: string): string {
  const info =
    (REQUEST as Record<string, StateInfo<string>>)[state] ??
    (EXECUTION as Record<string, StateInfo<string>>)[state];
  return info?.label ?? state.replaceAll('_', ' ');
}
