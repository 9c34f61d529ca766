import type { Targets } from '@pyreach/protocol/api';
import { PROTOCOL_VERSION } from '@pyreach/protocol/common';
import { codeHash, signJob, type JobEnvelope } from '@pyreach/protocol/job';
import {
  IN_FLIGHT_EXECUTION_STATES,
  isFailedExecution,
  requestOutcome,
  type ExecutionState,
  type RequestState,
} from '@pyreach/protocol/states';
import type { Execution, InjectionRequest, PrismaClient, Tx } from '@pyreach/db';
import { SYSTEM } from './actor';
import { appendAudit, appendAuditMany } from './audit';
import { outcome, type Effect, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import { matchSelector } from './inventory';
import { executionStateOf, optionsOf, paramsOf, rolloutOf, targetsOf } from './rows';
import type { SigningKeyPair } from './signing';

export interface ConcreteTarget {
  agentId: string;
  pid: number;
  startTime: string;
  tid?: number;
}

/** Resolves a selector to concrete processes; the default reads the current python_process snapshot. */
export type ResolveTargets = (
  tx: Tx,
  selector: Extract<Targets, { type: 'selector' }>,
) => Promise<ConcreteTarget[]>;

const snapshotResolver: ResolveTargets = async (tx, sel) =>
  (await matchSelector(tx, { labels: sel.labels, process: sel.process })).map((p) => ({
    agentId: p.agentId,
    pid: p.pid,
    startTime: p.startTime,
  }));

/**
 * Turns an approved request into executions (one per target, fresh jobId, `queued`) and moves it to
 * `dispatching` — guarded by `WHERE state = 'approved'`, so planning twice (two replicas, a restart) plans
 * once. An approval that expired before dispatch ends the request as `expired`; no targets ends it `failed`.
 * Returns the planned executions (empty when the request ended instead) and the request's new state.
 */
export async function planExecutions(
  db: PrismaClient,
  requestId: string,
  resolveTargets: ResolveTargets = snapshotResolver,
  now: Date = new Date(),
): Promise<Outcome<Execution[]>> {
  const ended = (state: RequestState): Outcome<Execution[]> =>
    outcome([], [{ kind: 'request', requestId, state }]);
  return db.$transaction(async (tx) => {
    const req = await tx.injectionRequest.findUnique({ where: { id: requestId } });
    if (!req)
      throw new AppError('NOT_FOUND', `request ${requestId} not found`, { userMessage: 'request not found' });
    if (req.state !== 'approved')
      throw new AppError('INVALID_STATE', `request ${requestId} is ${req.state}, not approved`, {
        userMessage: `a ${req.state} request cannot be dispatched`,
      });
    if (req.approvalExpiresAt && req.approvalExpiresAt <= now) {
      await tx.injectionRequest.updateMany({
        where: { id: requestId, state: 'approved' },
        data: { state: 'expired', completedAt: now },
      });
      await appendAudit(
        tx,
        {
          actor: SYSTEM,
          action: 'request.expire',
          subjectType: 'request',
          subjectId: requestId,
          data: { approvalExpiresAt: req.approvalExpiresAt.toISOString() },
        },
        now,
      );
      return ended('expired');
    }
    const claimed = await tx.injectionRequest.updateMany({
      where: { id: requestId, state: 'approved' },
      data: { state: 'dispatching', dispatchedAt: now },
    });
    if (claimed.count !== 1)
      throw new AppError('INVALID_STATE', `request ${requestId} was dispatched concurrently`, {
        userMessage: 'request is already being dispatched',
      });
    const targets = targetsOf(req.targets);
    const concrete = targets.type === 'processes' ? targets.processes : await resolveTargets(tx, targets);
    const unique = [...new Map(concrete.map((t) => [`${t.agentId}/${t.pid}/${t.startTime}`, t])).values()];
    if (unique.length === 0) {
      await tx.injectionRequest.update({
        where: { id: requestId },
        data: { state: 'failed', completedAt: now },
      });
      await appendAudit(
        tx,
        {
          actor: SYSTEM,
          action: 'request.fail',
          subjectType: 'request',
          subjectId: requestId,
          data: { reason: 'the selector matched no process at dispatch' },
        },
        now,
      );
      return ended('failed');
    }
    await tx.execution.createMany({
      data: unique.map((t, i) => ({
        id: newId('ex'),
        requestId,
        agentId: t.agentId,
        pid: t.pid,
        startTime: t.startTime,
        tid: t.tid ?? null,
        jobId: newId('job'),
        state: 'queued',
        // Strictly increasing queue times keep the rollout order stable.
        queuedAt: new Date(now.getTime() + i),
      })),
    });
    await appendAudit(
      tx,
      {
        actor: SYSTEM,
        action: 'request.dispatch',
        subjectType: 'request',
        subjectId: requestId,
        data: { executions: unique.length },
      },
      now,
    );
    const planned = await tx.execution.findMany({ where: { requestId }, orderBy: { queuedAt: 'asc' } });
    return outcome(planned, [{ kind: 'request', requestId, state: 'dispatching' }]);
  });
}

/** A claimed job: the execution (now `sent`) and the signed envelope to emit for it. */
export interface SentJob {
  execution: Execution;
  envelope: JobEnvelope;
}

/**
 * One rollout step of one request in ONE transaction: the queued executions, oldest first, up to
 * `rollout.concurrency` minus those in flight, restricted to the agents `addressable` here (those connected to
 * this process: other replicas send to theirs), signed and claimed `queued → sent` together, with one audit
 * event per claimed execution. Once failures reach `rollout.maxFailures` nothing more is sent: the queued rest
 * is cancelled and the request completes as `failed` when the in-flight ones end; it also completes when every
 * execution ended. Returns only what this call claimed — emit exactly these; a job another replica or pass
 * claimed first is left out, so it goes out at most once — and, as effects, each sent execution and the
 * request's end when it ended.
 */
export async function sendWave(
  db: PrismaClient,
  requestId: string,
  signer: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>,
  addressable: (agentId: string) => boolean,
  now: Date = new Date(),
): Promise<Outcome<SentJob[]>> {
  return db.$transaction(async (tx) => {
    const req = await tx.injectionRequest.findUnique({ where: { id: requestId } });
    if (!req || req.state !== 'dispatching') return outcome([]);
    const step = await rolloutStep(tx, req, now);
    if (step.ended) return outcome([], [{ kind: 'request', requestId, state: step.ended }]);
    const wave = step.queued.filter((e) => addressable(e.agentId));
    // Signed before the claim, so no row lock is held while signing.
    const signed = wave.map((execution) => ({
      execution,
      envelope: buildEnvelope(execution, req, signer, now),
    }));
    const claimed = await claimSent(
      tx,
      signed.map((j) => ({ executionId: j.execution.id, envelope: j.envelope })),
      now,
    );
    const sent = signed
      .filter((j) => claimed.has(j.execution.id))
      .map((j) => ({
        execution: {
          ...j.execution,
          state: 'sent',
          sentAt: now,
          notAfter: new Date(j.envelope.payload.notAfter),
        },
        envelope: j.envelope,
      }));
    return outcome(
      sent,
      sent.map(({ execution: e }): Effect => ({
        kind: 'execution',
        requestId,
        executionId: e.id,
        state: 'sent',
        errorCode: null,
      })),
    );
  });
}

/**
 * Inside a transaction on a dispatching request: stops the rollout once failures reach `maxFailures`, completes
 * the request when nothing is queued and all has ended (`ended`: its new state), else returns the queued
 * executions there is room for. Counts states with one aggregate query instead of loading every execution, so a
 * step costs the same for a request of 5 targets or 5,000.
 */
async function rolloutStep(
  tx: Tx,
  req: InjectionRequest,
  now: Date,
): Promise<{ queued: Execution[]; ended: RequestState | null }> {
  const rollout = rolloutOf(req.rollout);
  const counts = await countStates(tx, req.id);
  const failures = sumStates(counts, isFailedExecution);
  if (failures >= rollout.maxFailures)
    return { queued: [], ended: await stopRollout(tx, req.id, failures, now) };
  if (!counts.get('queued')) return { queued: [], ended: await completeIfDone(tx, req.id, now) };
  const room = rollout.concurrency - sumStates(counts, (s) => IN_FLIGHT_EXECUTION_STATES.includes(s));
  if (room <= 0) return { queued: [], ended: null };
  const queued = await tx.execution.findMany({
    where: { requestId: req.id, state: 'queued' },
    orderBy: { queuedAt: 'asc' },
    take: room,
  });
  return { queued, ended: null };
}

/** Cancels what is still queued once the failure limit is reached (audited once), then completes if all ended. */
async function stopRollout(
  tx: Tx,
  requestId: string,
  failures: number,
  now: Date,
): Promise<RequestState | null> {
  const stopped = await tx.execution.updateMany({
    where: { requestId, state: 'queued' },
    data: {
      state: 'cancelled',
      errorCode: 'ROLLOUT_STOPPED',
      errorMessage: `stopped after ${failures} failure(s)`,
      finishedAt: now,
    },
  });
  if (stopped.count > 0) {
    await appendAudit(
      tx,
      {
        actor: SYSTEM,
        action: 'request.rollout_stop',
        subjectType: 'request',
        subjectId: requestId,
        data: { failures, cancelled: stopped.count },
      },
      now,
    );
  }
  return completeIfDone(tx, requestId, now);
}

/** How many of a request's executions are in each state: one GROUP BY, never the rows. */
async function countStates(tx: Tx, requestId: string): Promise<Map<ExecutionState, number>> {
  const groups = await tx.execution.groupBy({ by: ['state'], where: { requestId }, _count: { _all: true } });
  return new Map(groups.map((g) => [executionStateOf(g.state), g._count._all]));
}

function sumStates(counts: Map<ExecutionState, number>, which: (state: ExecutionState) => boolean): number {
  let n = 0;
  for (const [state, count] of counts) if (which(state)) n += count;
  return n;
}

/** Extra time an agent gets beyond pickup timeout + budget before a sent job expires. */
const ENVELOPE_SLACK_MS = 5 * 60_000;

/**
 * The signed job for one execution. notAfter = the earlier of the approval's expiry and now + pickup timeout +
 * budget + slack, so an agent never starts a job long after it was meant to run.
 */
export function buildEnvelope(
  execution: Execution,
  request: InjectionRequest,
  signer: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>,
  now: Date = new Date(),
): JobEnvelope {
  const options = optionsOf(request.options);
  const horizon =
    now.getTime() + (options.pickupTimeoutSeconds + options.budgetSeconds) * 1000 + ENVELOPE_SLACK_MS;
  const notAfter = new Date(Math.min(horizon, request.approvalExpiresAt?.getTime() ?? horizon));
  return signJob(
    {
      v: PROTOCOL_VERSION,
      jobId: execution.jobId,
      agentId: execution.agentId,
      requestId: request.id,
      target: {
        pid: execution.pid,
        startTime: execution.startTime,
        ...(execution.tid ? { tid: execution.tid } : {}),
      },
      kind: request.kind as 'library' | 'custom',
      scriptId: request.scriptId,
      code: request.code,
      codeHash: codeHash(request.code),
      params: paramsOf(request.params),
      options,
      issuedAt: now.toISOString(),
      notAfter: notAfter.toISOString(),
    },
    signer.privateKey,
    signer.publicKey,
  );
}

/**
 * The at-most-once claim for many jobs inside `tx`: `queued → sent` with `WHERE state = 'queued'` (one statement
 * per distinct notAfter — one for a wave signed at one instant), then one `execution.send` audit event per
 * execution actually claimed, appended together. Returns the ids claimed.
 */
async function claimSent(
  tx: Tx,
  jobs: { executionId: string; envelope: Pick<JobEnvelope, 'payload'> }[],
  now: Date,
): Promise<Set<string>> {
  const byNotAfter = new Map<string, string[]>();
  for (const j of jobs) {
    const ids = byNotAfter.get(j.envelope.payload.notAfter) ?? [];
    ids.push(j.executionId);
    byNotAfter.set(j.envelope.payload.notAfter, ids);
  }
  const claimed = new Set<string>();
  for (const [notAfter, ids] of byNotAfter) {
    const rows = await tx.execution.updateManyAndReturn({
      where: { id: { in: ids }, state: 'queued' },
      data: { state: 'sent', sentAt: now, notAfter: new Date(notAfter) },
      select: { id: true },
    });
    for (const r of rows) claimed.add(r.id);
  }
  await appendAuditMany(
    tx,
    jobs
      .filter((j) => claimed.has(j.executionId))
      .map(({ executionId, envelope: { payload: p } }) => ({
        actor: SYSTEM,
        action: 'execution.send',
        subjectType: 'execution',
        subjectId: executionId,
        data: { jobId: p.jobId, agentId: p.agentId, requestId: p.requestId, notAfter: p.notAfter },
      })),
    now,
  );
  return claimed;
}

/**
 * Completes a dispatching request once every execution is terminal, with the outcome the state table derives
 * from its executions (requestOutcome). Returns the new state, or null when work remains. Call inside the
 * transaction that ended the last one.
 */
export async function completeIfDone(
  tx: Tx,
  requestId: string,
  now: Date = new Date(),
): Promise<RequestState | null> {
  const counts = await countStates(tx, requestId);
  const req = await tx.injectionRequest.findUnique({
    where: { id: requestId },
    select: { cancelRequestedAt: true },
  });
  // agent_lost is terminal-looking but may still move; the request completes anyway (its outcome is known-bad now).
  // A request cancelled while executions ran ends `cancelled` once the last of them stopped.
  const state = requestOutcome(counts, { cancelRequested: !!req?.cancelRequestedAt });
  if (!state) return null;
  const res = await tx.injectionRequest.updateMany({
    where: { id: requestId, state: 'dispatching' },
    data: { state, completedAt: now },
  });
  if (res.count !== 1) return null;
  await appendAudit(
    tx,
    {
      actor: SYSTEM,
      action: `request.${state === 'succeeded' ? 'succeed' : state === 'failed' ? 'fail' : 'cancelled'}`,
      subjectType: 'request',
      subjectId: requestId,
      data: { executions: Object.fromEntries(counts) },
    },
    now,
  );
  return state;
}
