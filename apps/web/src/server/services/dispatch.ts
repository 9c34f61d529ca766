import type { AgentProtocolVersion } from '@pyreach/protocol/agent';
import type { Targets } from '@pyreach/protocol/api';
import { PROTOCOL_VERSION } from '@pyreach/protocol/common';
import { canonicalJson } from '@pyreach/protocol/canonical';
import {
  codeHash,
  signJob,
  signJobV2,
  toV1,
  JobPayloadV2,
  type AnyJobEnvelope,
  type ExecPayloadV2,
  type JobEnvelope,
} from '@pyreach/protocol/job';
import {
  IN_FLIGHT_EXECUTION_STATES,
  canRequestTransition,
  isFailedExecution,
  requestOutcome,
  type ExecutionState,
  type RequestState,
} from '@pyreach/protocol/states';
import type { Execution, InjectionRequest, PrismaClient, Tx } from '@pyreach/db';
import { SYSTEM } from './actor';
import { countApprovals, policyAtDispatch, type ApprovalCount } from './approvals';
import type { AttestationKey } from './attest';
import { checkAtDispatch } from './break-glass';
import { appendAudit, appendAuditMany } from './audit';
import { outcome, secondsBetween, type Effect, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import { matchSelector } from './inventory';
import { processLabeler } from './namespace-labels';
import { executionStateOf, optionsOf, paramsOf, rolloutOf, targetsOf } from './rows';
import type { SigningKeyPair } from './signing';

/** The keys dispatch needs: the job-signing key, and the attestation key's public half to check votes with. */
export interface DispatchKeys {
  signing: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>;
  attestation: Pick<AttestationKey, 'publicKey' | 'keyId'>;
}

/** The envelope version an agent announced at its handshake (1 when unknown). */
export type AgentVersionOf = (agentId: string) => AgentProtocolVersion;

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
  envelope: AnyJobEnvelope;
}

/** The advisory-lock class of rollout waves (two-key form: the request id's hash is the second key). */
const WAVE_LOCK_CLASS = 0x57415645; // 'WAVE'

/**
 * One rollout step of one request in ONE transaction: the queued executions, oldest first, up to
 * `rollout.concurrency` minus those in flight, restricted to the agents `addressable` here (those connected to
 * this process: other replicas send to theirs), signed and claimed `queued → sent` together, with one audit
 * event per claimed execution. Once failures reach `rollout.maxFailures` nothing more is sent: the queued rest
 * is cancelled and the request completes as `failed` when the in-flight ones end; it also completes when every
 * execution ended. Returns only what this call claimed — emit exactly these; a job another replica or pass
 * claimed first is left out, so it goes out at most once — and, as effects, each sent execution and the
 * request's end when it ended.
 *
 * Right before signing, each execution passes the gate (`gateExecution`): the policy of its host resolved
 * again, the content hash recomputed, the attested votes counted. One that needs more approvals waits
 * (`awaiting_approval`, audited with why) and is sent once they are there; custom code its host's policy forbids
 * is `refused` (POLICY_DENIED, audited). Nothing is signed on the strength of a state column. Agents that
 * announced protocol v2 get v2 envelopes carrying the content hash and the attestation ids; v1 agents get v1.
 */
export async function sendWave(
  db: PrismaClient,
  requestId: string,
  keys: DispatchKeys,
  addressable: (agentId: string) => boolean,
  now: Date = new Date(),
  versionOf: AgentVersionOf = () => 1,
): Promise<Outcome<SentJob[]>> {
  return db.$transaction(async (tx) => {
    // One wave of a request at a time (two replicas, or a pass and a wake-up): each counts what is in flight
    // after the other committed, so the rollout's concurrency holds exactly. Without it both counted the same
    // room and claimed different queued executions between them. A lock of its own (not the request's row),
    // so reports, which lock executions and then touch the request, never wait on a wave in the other order.
    await tx.$queryRawUnsafe(
      'SELECT pg_advisory_xact_lock($1::int, hashtext($2)) IS NULL AS locked',
      WAVE_LOCK_CLASS,
      requestId,
    );
    const req = await tx.injectionRequest.findUnique({ where: { id: requestId } });
    if (!req || req.state !== 'dispatching') return outcome([]);
    const effects: Effect[] = [];
    const gate = gateFor(tx, req, keys, now);
    const step = await rolloutStep(tx, req, now);
    if (step.ended) return outcome([], [{ kind: 'request', requestId, state: step.ended }]);
    // The wave's agents and their declarations in one read, not one per agent (a 1,000-target fan-out).
    gate.prime(step.candidates.map((e) => e.agentId));
    const toSign: { execution: Execution; approvals: ApprovalCount; approvalUntil: Date | null }[] = [];
    let room = step.room;
    for (const execution of step.candidates) {
      const g = await gate(execution);
      if (g.kind === 'pass') {
        if (room > 0 && addressable(execution.agentId)) {
          toSign.push({ execution, approvals: g.approvals, approvalUntil: g.approvalUntil });
          room--;
        }
        continue;
      }
      const moved = await holdOrRefuse(tx, execution, g, now);
      if (moved) effects.push(moved);
    }
    // Signed before the claim, so no row lock is held while signing.
    const signed: { execution: Execution; envelope: AnyJobEnvelope; notAfter: string }[] = [];
    for (const j of toSign) {
      const built = buildEnvelopeFor(
        j.execution,
        req,
        keys.signing,
        { attestationIds: j.approvals.attestationIds, approvalUntil: j.approvalUntil },
        versionOf(j.execution.agentId),
        now,
      );
      if (built.ok)
        signed.push({ execution: j.execution, envelope: built.envelope, notAfter: built.notAfter });
      else {
        const moved = await holdOrRefuse(
          tx,
          j.execution,
          { kind: 'refuse', code: 'AGENT_UPGRADE_REQUIRED', message: built.message },
          now,
        );
        if (moved) effects.push(moved);
      }
    }
    const claimed = await claimSent(
      tx,
      signed.map((j) => ({ executionId: j.execution.id, envelope: j.envelope, notAfter: j.notAfter, req })),
      now,
    );
    const sent = signed
      .filter((j) => claimed.has(j.execution.id))
      .map((j) => ({
        execution: {
          ...j.execution,
          state: 'sent',
          sentAt: now,
          notAfter: new Date(j.notAfter),
        },
        envelope: j.envelope,
      }));
    if (effects.length) {
      const ended = await completeIfDone(tx, requestId, now);
      if (ended) effects.push({ kind: 'request', requestId, state: ended });
    }
    return outcome(sent, [
      ...effects,
      ...sent.map(({ execution: e }): Effect => ({
        kind: 'execution',
        requestId,
        executionId: e.id,
        state: 'sent',
        errorCode: null,
        timings: { dispatchSeconds: secondsBetween(e.queuedAt, now) },
      })),
    ]);
  });
}

/** What the gate decided for one execution. */
type Gate =
  | { kind: 'pass'; approvals: ApprovalCount; approvalUntil: Date | null }
  | {
      kind: 'hold';
      code: 'APPROVAL_REQUIRED';
      message: string;
      needed: number;
      counted: number;
      forged: number;
    }
  | { kind: 'expire'; code: 'EXPIRED'; message: string }
  | { kind: 'refuse'; code: 'POLICY_DENIED' | 'AGENT_UPGRADE_REQUIRED'; message: string };

/**
 * The check right before signing, per execution (cached: one policy resolution per distinct set of policy
 * labels and one count of the votes per distinct policy in a wave).
 */
function gateFor(tx: Tx, req: InjectionRequest, keys: DispatchKeys, now: Date) {
  // A wave gates up to a thousand executions over few distinct hosts and policies: each lookup once per wave.
  // Policy labels are per process (host labels + the namespace declaration, namespace-labels.ts), read afresh
  // each wave: a process whose agent now reports it in another namespace is re-priced here, before signing.
  const labelsOfProcess = processLabeler(tx, keys.attestation);
  const policies = new Map<string, ReturnType<typeof policyAtDispatch>>();
  const counts = new Map<string, Promise<ApprovalCount>>();
  const times = new Map<string, Promise<number[]>>();
  const gate = async (execution: Execution): Promise<Gate> => {
    let labels: Awaited<ReturnType<typeof labelsOfProcess>>;
    try {
      labels = await labelsOfProcess(execution);
    } catch (err) {
      // A declaration that does not verify prices no process in a namespace: refused, saying why (audited).
      if (err instanceof AppError && err.code === 'POLICY_DENIED')
        return { kind: 'refuse', code: 'POLICY_DENIED', message: err.userMessage };
      throw err;
    }
    if (!labels)
      return { kind: 'refuse', code: 'POLICY_DENIED', message: 'the target agent is unknown or revoked' };
    // Keyed by the effective labels: two processes of one host in differently declared namespaces differ.
    const labelsKey = canonicalJson(labels);
    let pending = policies.get(labelsKey);
    if (!pending) {
      pending = policyAtDispatch(tx, req, labels, keys.attestation);
      policies.set(labelsKey, pending);
    }
    const policy = await pending;
    if (!policy.ok) return { kind: 'refuse', code: policy.code, message: policy.message };
    if (req.emergency) {
      // Break-glass: no votes, but the filing's attestation and a grant still valid now — never the column.
      const bg = await checkAtDispatch(tx, req, keys.attestation, now);
      if (!bg.ok) return { kind: 'refuse', code: 'POLICY_DENIED', message: bg.message };
      return {
        kind: 'pass',
        approvals: { ok: true, attestationIds: [], needed: 0, forged: 0, reason: null },
        approvalUntil: req.approvalExpiresAt,
      };
    }
    const p = policy.policy;
    const key = JSON.stringify([p.requiredApprovals, p.approverRoles, p.approvalValidMinutes]);
    let count = counts.get(key);
    if (!count) {
      count = countApprovals(tx, req, p, keys.attestation, now);
      counts.set(key, count);
    }
    const approvals = await count;
    if (approvals.ok) {
      const idsKey = approvals.attestationIds.join(',');
      let at = times.get(idsKey);
      if (!at) {
        at = approvalTimes(tx, approvals.attestationIds);
        times.set(idsKey, at);
      }
      const when = await at;
      const approvalUntil = when.length
        ? new Date(Math.min(...when) + p.approvalValidMinutes * 60_000)
        : req.approvalExpiresAt;
      return { kind: 'pass', approvals, approvalUntil };
    }
    if (execution.queuedAt.getTime() + p.approvalValidMinutes * 60_000 <= now.getTime())
      return {
        kind: 'expire',
        code: 'EXPIRED',
        message: `the approvals this host’s policy needs did not arrive within ${p.approvalValidMinutes} minutes`,
      };
    return {
      kind: 'hold',
      code: 'APPROVAL_REQUIRED',
      message: approvals.reason ?? 'needs more approvals',
      needed: approvals.needed,
      counted: approvals.attestationIds.length,
      forged: approvals.forged,
    };
  };
  return Object.assign(gate, { prime: labelsOfProcess.prime });
}

async function approvalTimes(tx: Tx, ids: string[]): Promise<number[]> {
  if (ids.length === 0) return [];
  const rows = await tx.review.findMany({ where: { id: { in: ids } }, select: { createdAt: true } });
  return rows.map((r) => r.createdAt.getTime());
}

/**
 * Moves an execution the gate stopped: `awaiting_approval` (once, audited; a held one stays), `refused` or
 * `expired` (audited). Returns its execution effect when its state changed.
 */
async function holdOrRefuse(
  tx: Tx,
  execution: Execution,
  g: Exclude<Gate, { kind: 'pass' }>,
  now: Date,
): Promise<Effect | null> {
  if (g.kind === 'hold' && execution.state === 'awaiting_approval') {
    // Still held: the reason shown follows what was counted (audited once, when it was first held).
    if (execution.errorMessage !== g.message)
      await tx.execution.updateMany({
        where: { id: execution.id, state: 'awaiting_approval' },
        data: { errorMessage: g.message },
      });
    return null;
  }
  const state: ExecutionState =
    g.kind === 'hold' ? 'awaiting_approval' : g.kind === 'expire' ? 'expired' : 'refused';
  const res = await tx.execution.updateMany({
    where: { id: execution.id, state: execution.state },
    data: {
      state,
      errorCode: g.code,
      errorMessage: g.message,
      ...(state === 'awaiting_approval' ? {} : { finishedAt: now }),
    },
  });
  if (res.count !== 1) return null;
  await appendAudit(
    tx,
    {
      actor: SYSTEM,
      action:
        g.kind === 'hold'
          ? 'execution.await_approval'
          : g.kind === 'expire'
            ? 'execution.expire'
            : 'execution.dispatch_refuse',
      subjectType: 'execution',
      subjectId: execution.id,
      data: {
        requestId: execution.requestId,
        agentId: execution.agentId,
        jobId: execution.jobId,
        code: g.code,
        reason: g.message,
        ...(g.kind === 'hold' ? { needed: g.needed, counted: g.counted, forged: g.forged } : {}),
      },
    },
    now,
  );
  return {
    kind: 'execution',
    requestId: execution.requestId,
    executionId: execution.id,
    state,
    errorCode: g.code,
  };
}

/**
 * Inside a transaction on a dispatching request: stops the rollout once failures reach `maxFailures`, completes
 * the request when nothing is queued or held and all has ended (`ended`: its new state), else returns the room
 * the rollout leaves and the candidates to gate: every execution held for approvals (they may pass now) and the
 * queued ones there is room for. Counts states with one aggregate query instead of loading every execution, so
 * a step costs the same for a request of 5 targets or 5,000.
 */
async function rolloutStep(
  tx: Tx,
  req: InjectionRequest,
  now: Date,
): Promise<{ candidates: Execution[]; room: number; ended: RequestState | null }> {
  const rollout = rolloutOf(req.rollout);
  const counts = await countStates(tx, req.id);
  const failures = sumStates(counts, isFailedExecution);
  if (failures >= rollout.maxFailures)
    return { candidates: [], room: 0, ended: await stopRollout(tx, req.id, failures, now) };
  if (!counts.get('queued') && !counts.get('awaiting_approval'))
    return { candidates: [], room: 0, ended: await completeIfDone(tx, req.id, now) };
  const room = rollout.concurrency - sumStates(counts, (s) => IN_FLIGHT_EXECUTION_STATES.includes(s));
  if (room <= 0) return { candidates: [], room: 0, ended: null };
  const held = counts.get('awaiting_approval')
    ? await tx.execution.findMany({
        where: { requestId: req.id, state: 'awaiting_approval' },
        orderBy: { queuedAt: 'asc' },
      })
    : [];
  // Planned together, executions share their queuedAt: the id orders them the same way on every pass.
  const queued = await tx.execution.findMany({
    where: { requestId: req.id, state: 'queued' },
    orderBy: [{ queuedAt: 'asc' }, { id: 'asc' }],
    take: room,
  });
  const candidates = [...held, ...queued].sort((a, b) => a.queuedAt.getTime() - b.queuedAt.getTime());
  return { candidates, room, ended: null };
}

/** Cancels what is still queued once the failure limit is reached (audited once), then completes if all ended. */
async function stopRollout(
  tx: Tx,
  requestId: string,
  failures: number,
  now: Date,
): Promise<RequestState | null> {
  const stopped = await tx.execution.updateMany({
    where: { requestId, state: { in: ['queued', 'awaiting_approval'] } },
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

/** Whether the request's rollout stopped at its failure limit (stopRollout cancelled what was left). */
async function rolloutStopped(tx: Tx, requestId: string): Promise<boolean> {
  return (await tx.execution.count({ where: { requestId, errorCode: 'ROLLOUT_STOPPED' } })) > 0;
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
 * The signed job for one execution in the version its agent speaks. v2 carries the content hash and the ids of
 * the attestations dispatch just verified; notAfter is the earlier of the approvals' validity and now + pickup
 * timeout + budget + slack. A v1 agent gets the v1 form when the job has one, else `ok: false` with a message
 * that says to upgrade the agent.
 */
export function buildEnvelopeFor(
  execution: Execution,
  request: InjectionRequest,
  signer: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>,
  approvals: { attestationIds: string[]; approvalUntil: Date | null },
  version: AgentProtocolVersion,
  now: Date = new Date(),
): { ok: true; envelope: AnyJobEnvelope; notAfter: string } | { ok: false; message: string } {
  const options = optionsOf(request.options);
  const horizon =
    now.getTime() + (options.pickupTimeoutSeconds + options.budgetSeconds) * 1000 + ENVELOPE_SLACK_MS;
  const notAfter = new Date(Math.min(horizon, approvals.approvalUntil?.getTime() ?? horizon)).toISOString();
  const payload: ExecPayloadV2 = {
    v: 2,
    action: 'exec',
    jobId: execution.jobId,
    agentId: execution.agentId,
    requestId: request.id,
    target: { pid: execution.pid, startTime: execution.startTime },
    contentHash: request.contentHash,
    approvals: approvals.attestationIds.slice(0, 16),
    breakGlass: false,
    kind: request.kind === 'library' ? 'library' : 'custom',
    scriptId: request.scriptId,
    code: request.code,
    codeHash: codeHash(request.code),
    params: paramsOf(request.params),
    options: {
      inline: options.inline,
      budgetSeconds: options.budgetSeconds,
      pickupTimeoutSeconds: options.pickupTimeoutSeconds,
      backend: options.backend,
      thread: execution.tid ? { tid: execution.tid } : 'main',
      wake: false,
    },
    issuedAt: now.toISOString(),
    notAfter,
  };
  if (version >= 2)
    return { ok: true, envelope: signJobV2(payload, signer.privateKey, signer.publicKey), notAfter };
  const v1 = toV1(payload);
  if (!v1.ok) return { ok: false, message: `${v1.message}: upgrade the agent` };
  return { ok: true, envelope: signJob(v1.payload, signer.privateKey, signer.publicKey), notAfter };
}

/**
 * The at-most-once claim for many jobs inside `tx`: `queued|awaiting_approval → sent` guarded by the state it was
 * gated in (one statement per distinct notAfter — one for a wave signed at one instant), then one
 * `execution.send` audit event per execution actually claimed (with the content hash and the attestations it
 * went out on), appended together. Returns the ids claimed.
 */
async function claimSent(
  tx: Tx,
  jobs: {
    executionId: string;
    envelope: AnyJobEnvelope;
    notAfter: string;
    req: Pick<InjectionRequest, 'id' | 'contentHash'>;
  }[],
  now: Date,
): Promise<Set<string>> {
  const byNotAfter = new Map<string, string[]>();
  for (const j of jobs) {
    const ids = byNotAfter.get(j.notAfter) ?? [];
    ids.push(j.executionId);
    byNotAfter.set(j.notAfter, ids);
  }
  const claimed = new Set<string>();
  for (const [notAfter, ids] of byNotAfter) {
    const rows = await tx.execution.updateManyAndReturn({
      where: { id: { in: ids }, state: { in: ['queued', 'awaiting_approval'] } },
      data: { state: 'sent', sentAt: now, notAfter: new Date(notAfter), errorCode: null, errorMessage: null },
      select: { id: true, jobId: true, agentId: true },
    });
    for (const r of rows) claimed.add(r.id);
  }
  await appendAuditMany(
    tx,
    jobs
      .filter((j) => claimed.has(j.executionId))
      .map((j) => {
        const p = envelopeFacts(j.envelope);
        return {
          actor: SYSTEM,
          action: 'execution.send',
          subjectType: 'execution',
          subjectId: j.executionId,
          data: {
            jobId: p.jobId,
            agentId: p.agentId,
            requestId: j.req.id,
            notAfter: j.notAfter,
            envelope: p.v,
            contentHash: j.req.contentHash,
            attestationIds: p.approvals,
          },
        };
      }),
    now,
  );
  return claimed;
}

/** The facts of a signed envelope of either version, for the audit record. */
function envelopeFacts(env: AnyJobEnvelope): {
  v: 1 | 2;
  jobId: string;
  agentId: string;
  approvals: string[] | null;
} {
  if ('v' in env) {
    const p = JobPayloadV2.parse(JSON.parse(env.payload));
    return { v: 2, jobId: p.jobId, agentId: p.agentId, approvals: p.approvals };
  }
  return { v: 1, jobId: env.payload.jobId, agentId: env.payload.agentId, approvals: null };
}

/**
 * After a late real result corrected one of its executions: a request that ended `failed` or
 * `partially_succeeded` on the control plane's guess (an execution `agent_lost` or `expired`) is corrected to
 * what its executions now show (`succeeded`, or `partially_succeeded` from `failed`), audited `request.correct`
 * with both states. Returns the new state, or null when nothing changed.
 */
export async function correctCompleted(
  tx: Tx,
  requestId: string,
  now: Date = new Date(),
): Promise<RequestState | null> {
  const req = await tx.injectionRequest.findUnique({
    where: { id: requestId },
    select: { state: true, cancelRequestedAt: true },
  });
  if (!req || (req.state !== 'failed' && req.state !== 'partially_succeeded')) return null;
  const from: RequestState = req.state;
  const counts = await countStates(tx, requestId);
  const state = requestOutcome(counts, {
    cancelRequested: !!req.cancelRequestedAt,
    rolloutStopped: await rolloutStopped(tx, requestId),
  });
  if (!state || state === from || !canRequestTransition(from, state)) return null;
  const res = await tx.injectionRequest.updateMany({
    where: { id: requestId, state: from },
    data: { state, completedAt: now },
  });
  if (res.count !== 1) return null;
  await appendAudit(
    tx,
    {
      actor: SYSTEM,
      action: 'request.correct',
      subjectType: 'request',
      subjectId: requestId,
      data: {
        from,
        to: state,
        correction: 'the agent delivered the real outcomes of executions given up on',
        executions: Object.fromEntries(counts),
      },
    },
    now,
  );
  return state;
}

/** The audit action a request's completion is recorded as. */
const COMPLETE_ACTION = {
  succeeded: 'succeed',
  partially_succeeded: 'partially_succeed',
  failed: 'fail',
  cancelled: 'cancelled',
} as const;

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
  const state = requestOutcome(counts, {
    cancelRequested: !!req?.cancelRequestedAt,
    rolloutStopped: await rolloutStopped(tx, requestId),
  });
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
      action: `request.${COMPLETE_ACTION[state]}`,
      subjectType: 'request',
      subjectId: requestId,
      data: { executions: Object.fromEntries(counts) },
    },
    now,
  );
  return state;
}
