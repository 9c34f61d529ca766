/**
 * Changes that undo themselves (issue 16 item 3). A `logging.set_level` with a duration restores the previous
 * levels inside the target by itself (a daemon timer there: agent and control plane may be down). The control
 * plane adds two follow-ups, both covered by the approval the change went out on — no new vote:
 *
 * - the **check**: scheduled (a `restore_run` row, `check`) in the transaction that recorded the change's
 *   success, due at its expiry plus a little grace; it reads what the target restored and records it
 *   (`request.restore_checked`, per target: restored, changed by someone else and left alone, target gone...);
 * - **Restore now**: the requester, an approver or an admin asks (`request.restore_now`); one `now` row per
 *   target whose change is still pending, due at once; the target restores at once (`request.restore_done`).
 *
 * A row is claimed `scheduled → sent` exactly once (conditional on its state) by the replica holding the agent's
 * connection, like a dispatch wave, and survives a restart. Its job is signed only then, and only from the
 * approved request's content: the row's content recomputed against its hash, the attested votes that let the
 * change go out verified again (break-glass: the filing's attestation), the target one the request was for, and
 * the code the approved source itself (which holds the restore: modes check / restore) with the approved
 * parameters plus that mode. Nothing in a `restore_run` row is signed: a database writer can at most ask for a
 * check or restore of a change that was approved, never for other code or other parameters.
 */
import { MAX_LOG_LEVEL_DURATION_SECONDS, getScript } from '@pyreach/scripts';
import type { AgentProtocolVersion, JobEvent } from '@pyreach/protocol/agent';
import type { AnyJobEnvelope } from '@pyreach/protocol/job';
import type { RequestRestore, RestoreRunRow, RestoredLevel } from '@pyreach/protocol/api';
import {
  RestoreRunState,
  restoreRunStatesBefore,
  type RestoreOutcome,
  type RequestState,
} from '@pyreach/protocol/states';
import type { Execution, InjectionRequest, Prisma, PrismaClient, RestoreRun, Tx } from '@pyreach/db';
import { SYSTEM, actorData, requireUser, type Actor } from './actor';
import { countApprovals } from './approvals';
import { appendAudit, appendAuditMany } from './audit';
import { checkAtDispatch } from './break-glass';
import { contentHashOfRow } from './content';
import { buildEnvelopeFor, type DispatchKeys } from './dispatch';
import { outcome, type Effect, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import { labelsOf, paramsOf, requestStateOf, rolesOf, targetsOf } from './rows';

/** Restore job ids: the agent's reports under such an id go to the restore run (services/index.ts jobs.apply). */
export const RESTORE_JOB_PREFIX = 'rjob';
export const isRestoreJob = (jobId: string) => jobId.startsWith(`${RESTORE_JOB_PREFIX}_`);

/** After a change's expiry, the check waits this long: the target's own timer goes first. */
export const RESTORE_CHECK_GRACE_MS = 5_000;
/** A run whose agent did not connect within this time after it was due ends `expired`. */
export const RESTORE_RUN_TTL_MS = 24 * 3600_000;

/** The script whose changes undo themselves, and whose source holds the restore. */
const SET_LEVEL = 'logging.set_level';

/** Whether a request's success may schedule a check at expiry: lets the report path skip the lookup for all others. */
export function undoesItself(req: { kind: string; scriptId: string | null }): boolean {
  return req.kind === 'library' && req.scriptId === SET_LEVEL;
}

/** The approved change's restore, when it has one: a library set_level (mode set) with a duration and a token. */
export function autoRestoreOf(
  req: Pick<InjectionRequest, 'kind' | 'scriptId' | 'params'>,
): { durationSeconds: number; restoreToken: string } | null {
  if (!undoesItself(req)) return null;
  const p = paramsOf(req.params);
  const duration = p.durationSeconds;
  if ((p.mode ?? 'set') !== 'set' || typeof p.restoreToken !== 'string') return null;
  if (typeof duration !== 'number' || !(duration > 0) || duration > MAX_LOG_LEVEL_DURATION_SECONDS)
    return null;
  return { durationSeconds: duration, restoreToken: p.restoreToken };
}

/**
 * Parameters of a library request as filed, with the restore token of a change that undoes itself set to the
 * request id, so the follow-ups can name the change in the target. Part of the content hash.
 */
export function withRestoreToken(
  scriptId: string | null | undefined,
  params: Record<string, unknown>,
  requestId: string,
): Record<string, unknown> {
  if (scriptId !== SET_LEVEL) return params;
  if (typeof params.durationSeconds !== 'number' || params.durationSeconds <= 0) return params;
  if ((params.mode ?? 'set') !== 'set') return params;
  // Always this request's id, whatever the filer sent: a token copied from another request (a retry, a pasted
  // parameter set) would tie this change's check and "Restore now" to that other change in the target.
  return { ...params, restoreToken: requestId };
}

const changed = (requestId: string, state: RequestState): Effect => ({ kind: 'request', requestId, state });

/**
 * Inside the transaction that recorded executions `succeeded`: schedules the check of each one whose request is
 * a change that undoes itself, due at its expiry plus grace (one per execution: a redelivered result schedules
 * nothing more). Audited once per request. Returns the requests concerned.
 */
export async function scheduleRestoreChecks(
  tx: Tx,
  executionIds: readonly string[],
  now: Date,
): Promise<string[]> {
  if (executionIds.length === 0) return [];
  const rows = await tx.execution.findMany({
    where: {
      id: { in: [...executionIds] },
      state: 'succeeded',
      request: { kind: 'library', scriptId: SET_LEVEL },
    },
    select: {
      id: true,
      requestId: true,
      agentId: true,
      pid: true,
      startTime: true,
      finishedAt: true,
      request: { select: { kind: true, scriptId: true, params: true } },
    },
  });
  const data: Prisma.RestoreRunCreateManyInput[] = [];
  const byRequest = new Map<string, { executions: string[]; restoreAt: Date }>();
  for (const ex of rows) {
    const auto = autoRestoreOf(ex.request);
    if (!auto) continue;
    // The target set the level before it reported; its timer ends at most this long after that report.
    const restoreAt = new Date(
      Math.min(ex.finishedAt?.getTime() ?? now.getTime(), now.getTime()) + auto.durationSeconds * 1000,
    );
    data.push({
      id: newId(RESTORE_JOB_PREFIX),
      requestId: ex.requestId,
      executionId: ex.id,
      agentId: ex.agentId,
      pid: ex.pid,
      startTime: ex.startTime,
      mode: 'check',
      state: 'scheduled',
      dueAt: new Date(restoreAt.getTime() + RESTORE_CHECK_GRACE_MS),
      requestedBy: 'system',
      createdAt: now,
    });
    const r = byRequest.get(ex.requestId) ?? { executions: [], restoreAt };
    r.executions.push(ex.id);
    byRequest.set(ex.requestId, r);
  }
  if (data.length === 0) return [];
  const created = await tx.restoreRun.createManyAndReturn({
    data,
    skipDuplicates: true,
    select: { requestId: true, executionId: true, dueAt: true },
  });
  const fresh = new Map<string, { executions: string[]; dueAt: Date }>();
  for (const c of created) {
    const r = fresh.get(c.requestId) ?? { executions: [], dueAt: c.dueAt };
    r.executions.push(c.executionId);
    fresh.set(c.requestId, r);
  }
  await appendAuditMany(
    tx,
    [...fresh].map(([requestId, r]) => ({
      actor: SYSTEM,
      action: 'request.restore_scheduled',
      subjectType: 'request',
      subjectId: requestId,
      data: { executions: r.executions, checkAt: r.dueAt.toISOString() },
    })),
    now,
  );
  return [...fresh.keys()];
}

/** Why a follow-up may not be signed, or what it is signed with. */
type RestoreGate =
  | { ok: true; req: InjectionRequest; execution: Execution; attestationIds: string[] }
  | { ok: false; code: 'POLICY_DENIED' | 'CONTENT_MISMATCH' | 'NOT_RESTORABLE'; message: string };

/**
 * The check before a follow-up's job is signed, from nothing a database writer alone can forge: the request's
 * content against its hash, the approval the change went out on (attested votes counted as of the change's
 * send; break-glass: the filing's attestation), the target one the request named, and the approved code this
 * control plane's own source of the script (the one that holds the restore modes).
 */
async function gateRestore(tx: Tx, run: RestoreRun, keys: DispatchKeys): Promise<RestoreGate> {
  const req = await tx.injectionRequest.findUnique({ where: { id: run.requestId } });
  const execution = await tx.execution.findUnique({ where: { id: run.executionId } });
  if (!req || !execution || execution.requestId !== req.id)
    return { ok: false, code: 'NOT_RESTORABLE', message: 'the request or its execution is gone' };
  if (
    execution.agentId !== run.agentId ||
    execution.pid !== run.pid ||
    execution.startTime !== run.startTime ||
    !execution.sentAt
  )
    return {
      ok: false,
      code: 'NOT_RESTORABLE',
      message: 'the run does not name a target the change was sent to',
    };
  if (contentHashOfRow(req) !== req.contentHash)
    return {
      ok: false,
      code: 'CONTENT_MISMATCH',
      message: 'the request’s content does not match the hash its approvals were cast on',
    };
  if (!autoRestoreOf(req))
    return { ok: false, code: 'NOT_RESTORABLE', message: 'the approved change does not undo itself' };
  if (req.code !== getScript(SET_LEVEL)?.source)
    return {
      ok: false,
      code: 'NOT_RESTORABLE',
      message: `the approved code is not this control plane's ${SET_LEVEL} (an older version without a restore mode): the target still restores itself, but it cannot be checked or restored from here`,
    };
  const targets = targetsOf(req.targets);
  if (targets.type === 'processes') {
    const named = targets.processes.some(
      (t) =>
        t.agentId === execution.agentId && t.pid === execution.pid && t.startTime === execution.startTime,
    );
    if (!named) return { ok: false, code: 'POLICY_DENIED', message: 'the request did not name this target' };
  } else {
    const agent = await tx.agent.findUnique({
      where: { id: execution.agentId },
      select: { labels: true, revokedAt: true },
    });
    if (!agent || agent.revokedAt)
      return { ok: false, code: 'POLICY_DENIED', message: 'the target agent is unknown or revoked' };
    const labels = labelsOf(agent.labels);
    if (!Object.entries(targets.labels).every(([k, v]) => labels[k] === v))
      return {
        ok: false,
        code: 'POLICY_DENIED',
        message: 'the target host does not match the request’s selector',
      };
  }
  if (req.emergency) {
    const bg = await checkAtDispatch(tx, req, keys.attestation, execution.sentAt);
    if (!bg.ok) return { ok: false, code: 'POLICY_DENIED', message: bg.message };
    return { ok: true, req, execution, attestationIds: [] };
  }
  // The votes that let the change go out, as they stood when it was sent: the restore is part of what they approved.
  const votes = await countApprovals(
    tx,
    req,
    {
      requiredApprovals: req.requiredApprovals,
      approverRoles: rolesOf(req.approverRoles),
      approvalValidMinutes: req.approvalValidMinutes,
    },
    keys.attestation,
    execution.sentAt,
  );
  if (!votes.ok)
    return {
      ok: false,
      code: 'POLICY_DENIED',
      message: votes.reason ?? 'the change’s approval does not verify',
    };
  return { ok: true, req, execution, attestationIds: votes.attestationIds };
}

/** A due follow-up claimed for the wire by the replica holding its agent's connection. */
export interface ClaimedRestore {
  jobId: string;
  agentId: string;
  requestId: string;
  envelope: AnyJobEnvelope;
}

/**
 * Due follow-ups of agents connected here, each gated, signed and claimed `scheduled → sent` in one
 * transaction (one replica wins each: the update is conditional on the state), audited `request.restore_send`.
 * One the gate stops ends `refused`, audited with why.
 */
export async function claimRestoreRuns(
  db: PrismaClient,
  keys: DispatchKeys,
  connectedAgentIds: readonly string[],
  versionOf: (agentId: string) => AgentProtocolVersion,
  now: Date = new Date(),
  limit = 200,
): Promise<Outcome<ClaimedRestore[]>> {
  if (connectedAgentIds.length === 0) return outcome([]);
  const due = await db.restoreRun.findMany({
    where: { state: 'scheduled', dueAt: { lte: now }, agentId: { in: [...connectedAgentIds] } },
    orderBy: { dueAt: 'asc' },
    take: limit,
  });
  const claimed: ClaimedRestore[] = [];
  const effects: Effect[] = [];
  for (const run of due) {
    const r = await db.$transaction(async (tx) => {
      const gate = await gateRestore(tx, run, keys);
      let refusal: { code: string; message: string } | null = gate.ok ? null : gate;
      let envelope: AnyJobEnvelope | null = null;
      let notAfter: string | null = null;
      if (gate.ok) {
        const params = { ...paramsOf(gate.req.params), mode: run.mode === 'now' ? 'restore' : 'check' };
        const built = buildEnvelopeFor(
          { ...gate.execution, jobId: run.id },
          { ...gate.req, params },
          keys.signing,
          { attestationIds: gate.attestationIds, approvalUntil: null },
          versionOf(run.agentId),
          now,
        );
        if (built.ok) {
          envelope = built.envelope;
          notAfter = built.notAfter;
        } else refusal = { code: 'AGENT_UPGRADE_REQUIRED', message: built.message };
      }
      const { count } = await tx.restoreRun.updateMany({
        where: { id: run.id, state: 'scheduled' },
        data: refusal
          ? {
              state: 'refused',
              outcome: 'failed',
              errorCode: refusal.code,
              message: refusal.message,
              finishedAt: now,
            }
          : { state: 'sent', sentAt: now, notAfter: new Date(notAfter!) },
      });
      if (count !== 1) return null;
      await appendAudit(
        tx,
        {
          actor: SYSTEM,
          action: refusal ? 'request.restore_refused' : 'request.restore_send',
          subjectType: 'request',
          subjectId: run.requestId,
          data: {
            runId: run.id,
            mode: run.mode,
            executionId: run.executionId,
            agentId: run.agentId,
            pid: run.pid,
            ...(refusal
              ? { code: refusal.code, reason: refusal.message }
              : {
                  jobId: run.id,
                  notAfter,
                  contentHash: gate.ok ? gate.req.contentHash : null,
                  attestationIds: gate.ok ? gate.attestationIds : [],
                }),
          },
        },
        now,
      );
      const state = gate.ok ? requestStateOf(gate.req.state) : null;
      return { envelope, state };
    });
    if (!r) continue;
    if (r.state) effects.push(changed(run.requestId, r.state));
    if (r.envelope)
      claimed.push({ jobId: run.id, agentId: run.agentId, requestId: run.requestId, envelope: r.envelope });
  }
  return outcome(claimed, effects);
}

/** The agent refused a follow-up's job in its ack: it ends refused with the agent's reason (a transport failure decides nothing). */
export async function restoreDispatchRefused(
  db: PrismaClient,
  agentId: string,
  jobId: string,
  error: { code: string; message: string },
  transport: boolean,
  now: Date = new Date(),
): Promise<Outcome<boolean>> {
  if (transport) return outcome(false);
  return db.$transaction(async (tx) => {
    const rows = await tx.restoreRun.updateManyAndReturn({
      where: { id: jobId, agentId, state: 'sent' },
      data: {
        state: 'refused',
        outcome: 'failed',
        errorCode: error.code,
        message: error.message,
        finishedAt: now,
      },
    });
    const run = rows[0];
    if (!run) return outcome(false);
    await auditEnd(tx, run, now);
    return outcome(true, [await requestEffect(tx, run.requestId)]);
  });
}

async function requestEffect(tx: Tx, requestId: string): Promise<Effect | null> {
  const r = await tx.injectionRequest.findUnique({ where: { id: requestId }, select: { state: true } });
  return r ? changed(requestId, requestStateOf(r.state)) : null;
}

/** `request.restore_checked` (the check) or `request.restore_done` (restore now): what one target said. */
async function auditEnd(tx: Tx, run: RestoreRun, now: Date): Promise<void> {
  const view = runRowOf(run);
  await appendAudit(
    tx,
    {
      actor: SYSTEM,
      action: run.mode === 'now' ? 'request.restore_done' : 'request.restore_checked',
      subjectType: 'request',
      subjectId: run.requestId,
      data: {
        runId: run.id,
        mode: run.mode,
        executionId: run.executionId,
        agentId: run.agentId,
        pid: run.pid,
        state: run.state,
        outcome: run.outcome,
        levels: view.levels,
        current: view.current,
        errorCode: run.errorCode,
        message: run.message,
      },
    },
    now,
  );
}

/** What the target's restore entry says, as one outcome. */
function outcomeOfResult(result: unknown): RestoreOutcome {
  const r = (result ?? {}) as { state?: unknown; outcome?: unknown };
  switch (r.state) {
    case 'restored':
      return Array.isArray(r.outcome) && r.outcome.some((o) => o && typeof o === 'object' && 'leftAt' in o)
        ? 'changed'
        : 'restored';
    case 'superseded':
      return 'superseded';
    case 'pending':
    case 'restoring':
      return 'pending';
    case 'unknown':
      return 'unknown';
    default:
      return 'failed';
  }
}

/** Largest stored result (JSON text) of a follow-up; a larger one is kept as failed. */
const MAX_RESTORE_RESULT_BYTES = 64 * 1024;

/**
 * The agent's `result` or `refused` for a follow-up job: only from the agent it was sent to, once (a second report
 * or another agent's changes nothing). Audited with what the target said. Returns whether a run took the event.
 */
export async function recordRestoreEvent(
  db: PrismaClient,
  agentId: string,
  ev: JobEvent,
  now: Date = new Date(),
): Promise<Outcome<boolean>> {
  if (ev.type !== 'result' && ev.type !== 'refused') return outcome(false);
  let data: {
    state: RestoreRunState;
    outcome: RestoreOutcome;
    result?: object;
    errorCode: string | null;
    message: string | null;
  };
  if (ev.type === 'refused') {
    data = { state: 'refused', outcome: 'failed', errorCode: ev.code, message: ev.message };
  } else {
    const r = ev.result;
    const size = Buffer.byteLength(JSON.stringify(r.result ?? null));
    if (r.status === 'succeeded' && size > MAX_RESTORE_RESULT_BYTES)
      data = {
        state: 'failed',
        outcome: 'failed',
        errorCode: 'RESULT_TOO_LARGE',
        message: `the result is ${size} bytes, more than ${MAX_RESTORE_RESULT_BYTES} stored`,
      };
    else if (r.status === 'succeeded')
      data = {
        state: 'succeeded',
        outcome: outcomeOfResult(r.result),
        ...(r.result && typeof r.result === 'object' ? { result: r.result as object } : {}),
        errorCode: null,
        message: null,
      };
    else
      data = {
        state: 'failed',
        outcome: r.status === 'target_gone' ? 'target_gone' : 'failed',
        errorCode: r.errorCode ?? r.status,
        message: r.message ?? r.error?.message ?? null,
      };
  }
  return db.$transaction(async (tx) => {
    const rows = await tx.restoreRun.updateManyAndReturn({
      where: { id: ev.jobId, agentId, state: 'sent' },
      data: { ...data, finishedAt: now },
    });
    const run = rows[0];
    if (!run) return outcome(false);
    await auditEnd(tx, run, now);
    return outcome(true, [await requestEffect(tx, run.requestId)]);
  });
}

/**
 * Runs not delivered in time (the agent did not connect within RESTORE_RUN_TTL_MS of it being due) or not
 * answered by their job's notAfter end `expired`, audited like any end (run by housekeeping).
 */
export async function expireRestoreRuns(db: PrismaClient, now: Date = new Date()): Promise<Outcome<number>> {
  const overdue = await db.restoreRun.findMany({
    where: {
      OR: [
        { state: 'scheduled', dueAt: { lte: new Date(now.getTime() - RESTORE_RUN_TTL_MS) } },
        { state: 'sent', notAfter: { lte: now } },
      ],
    },
    take: 500,
  });
  const effects: Effect[] = [];
  for (const row of overdue) {
    if (!restoreRunStatesBefore('expired').includes(RestoreRunState.parse(row.state))) continue;
    const e = await db.$transaction(async (tx) => {
      const rows = await tx.restoreRun.updateManyAndReturn({
        where: { id: row.id, state: row.state },
        data: {
          state: 'expired',
          errorCode: row.state === 'scheduled' ? 'NOT_DELIVERED' : 'NO_REPORT',
          message:
            row.state === 'scheduled'
              ? 'the agent was not connected in time: the target restored itself (or not) unobserved'
              : 'the agent took the job but did not report before it expired',
          finishedAt: now,
        },
      });
      const run = rows[0];
      if (!run) return null;
      await auditEnd(tx, run, now);
      return requestEffect(tx, run.requestId);
    });
    if (e) effects.push(e);
  }
  return outcome(effects.length, effects);
}

/**
 * "Restore now": the approved restore, at once, for every target whose change is still pending (its check not yet
 * sent) and not yet asked to restore. No new vote — it is part of what was approved — but a person (or token)
 * allowed `request:restore`: the requester, or an approver or admin. Audited `request.restore_now`.
 */
export async function restoreNow(
  db: PrismaClient,
  actor: Actor,
  requestId: string,
  now: Date = new Date(),
): Promise<Outcome<RequestRestore>> {
  const user = requireUser(actor, 'request:restore');
  const result = await db.$transaction(async (tx) => {
    const req = await tx.injectionRequest.findUnique({ where: { id: requestId } });
    if (!req)
      throw new AppError('NOT_FOUND', `request ${requestId} not found`, { userMessage: 'request not found' });
    if (user.role === 'operator' && req.requesterId !== user.id)
      throw new AppError('FORBIDDEN', `user ${user.id} may not restore ${requestId}`, {
        userMessage: 'only the requester, an approver or an admin may restore this change',
      });
    if (!autoRestoreOf(req))
      throw new AppError('INVALID_STATE', `request ${requestId} does not undo itself`, {
        userMessage: "this request's change does not undo itself: there is nothing to restore",
      });
    const checks = await tx.restoreRun.findMany({
      where: { requestId, mode: 'check', state: 'scheduled', dueAt: { gt: now } },
    });
    const asked = new Set(
      (
        await tx.restoreRun.findMany({ where: { requestId, mode: 'now' }, select: { executionId: true } })
      ).map((r) => r.executionId),
    );
    const open = checks.filter((c) => !asked.has(c.executionId));
    if (open.length === 0)
      throw new AppError('INVALID_STATE', `request ${requestId} has nothing pending to restore`, {
        userMessage:
          'nothing left to restore: every target has restored itself, been restored, or its change has not been made',
      });
    const created = await tx.restoreRun.createManyAndReturn({
      data: open.map((c) => ({
        id: newId(RESTORE_JOB_PREFIX),
        requestId,
        executionId: c.executionId,
        agentId: c.agentId,
        pid: c.pid,
        startTime: c.startTime,
        mode: 'now',
        state: 'scheduled',
        dueAt: now,
        requestedBy: actor.type === 'system' ? actor.name : actor.id,
        createdAt: now,
      })),
      skipDuplicates: true,
      select: { executionId: true },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'request.restore_now',
        subjectType: 'request',
        subjectId: requestId,
        data: { executions: created.map((c) => c.executionId), ...actorData(actor) },
      },
      now,
    );
    return requestStateOf(req.state);
  });
  return outcome(await restoreView(db, requestId, now), [
    changed(requestId, result),
    { kind: 'wake', why: 'restore' },
  ]);
}

function levelsOf(result: unknown): { levels: RestoredLevel[]; current: string | null } {
  const r = (result ?? {}) as { outcome?: unknown; current?: unknown };
  const levels: RestoredLevel[] = [];
  if (Array.isArray(r.outcome))
    for (const o of r.outcome) {
      if (!o || typeof o !== 'object') continue;
      const x = o as Record<string, unknown>;
      const str = (k: string) => (typeof x[k] === 'string' ? { [k]: x[k] as string } : {});
      levels.push({
        kind: x.kind === 'handler' ? 'handler' : 'logger',
        name: typeof x.name === 'string' ? x.name : '?',
        ...str('restored'),
        ...str('from'),
        ...str('leftAt'),
        ...str('expected'),
        ...str('reason'),
      });
    }
  return { levels, current: typeof r.current === 'string' ? r.current : null };
}

function runRowOf(run: RestoreRun): RestoreRunRow {
  const { levels, current } = levelsOf(run.result);
  return {
    id: run.id,
    executionId: run.executionId,
    agentId: run.agentId,
    pid: run.pid,
    mode: run.mode === 'now' ? 'now' : 'check',
    state: RestoreRunState.parse(run.state),
    dueAt: run.dueAt.toISOString(),
    outcome: (run.outcome as RestoreOutcome | null) ?? null,
    levels,
    current,
    errorCode: run.errorCode,
    message: run.message,
    requestedBy: run.requestedBy,
    finishedAt: run.finishedAt?.toISOString() ?? null,
  };
}

/** A request's restore: when each target restores itself, its follow-ups, and whether "Restore now" is open. */
export async function restoreView(
  db: PrismaClient | Tx,
  requestId: string,
  now: Date = new Date(),
): Promise<RequestRestore> {
  const req = await db.injectionRequest.findUnique({ where: { id: requestId } });
  if (!req)
    throw new AppError('NOT_FOUND', `request ${requestId} not found`, { userMessage: 'request not found' });
  const auto = autoRestoreOf(req);
  const runs = await db.restoreRun.findMany({
    where: { requestId },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  });
  const checks = runs.filter((r) => r.mode === 'check');
  const asked = new Set(runs.filter((r) => r.mode === 'now').map((r) => r.executionId));
  return {
    autoRestore: auto !== null,
    durationSeconds: auto?.durationSeconds ?? null,
    targets: checks.map((c) => ({
      executionId: c.executionId,
      agentId: c.agentId,
      pid: c.pid,
      restoreAt: new Date(c.dueAt.getTime() - RESTORE_CHECK_GRACE_MS).toISOString(),
    })),
    runs: runs.map(runRowOf),
    restoreNowOpen:
      auto !== null &&
      checks.some((c) => c.state === 'scheduled' && c.dueAt > now && !asked.has(c.executionId)),
  };
}
