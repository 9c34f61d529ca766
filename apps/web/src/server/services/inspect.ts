/**
 * `process:inspect`: a person (or token) asks an agent to read one process's thread stacks or asyncio tasks from
 * outside. Nothing runs in the target, so no approval is needed by default; every inspection is audited (who,
 * which process, what) in the same transaction that signs its job. Agents older than protocol v2 cannot inspect:
 * they are refused with an "upgrade the agent" message.
 *
 * The signed job waits in its row (`queued`) and the dispatcher of the replica holding the agent's connection
 * claims it (`sent`) and puts it on the wire, as for executions; the agent's report ends it once, only from the
 * addressed agent; an inspection nobody answered by its job's notAfter ends `expired` (housekeeping). States:
 * INSPECTION in @pyreach/protocol/states. Inspection job ids start with `ijob_`, so an agent's report reaches the
 * inspection, never an execution.
 */
import type { InspectProcessBody, InspectionView } from '@pyreach/protocol/api';
import type { JobEvent } from '@pyreach/protocol/agent';
import { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { signJobV2, type JobEnvelopeV2, type JobPayloadV2 } from '@pyreach/protocol/job';
import type { PrismaClient } from '@pyreach/db';
import { actorData, assertCan, type Actor } from './actor';
import { appendAudit } from './audit';
import type { AgentProtocolVersion } from '@pyreach/protocol/agent';
import { inspectionStatesBefore, type InspectionState } from '@pyreach/protocol/states';
import { outcome, type Effect, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import type { SigningKeyPair } from './signing';

/** How long an inspection job stays valid for its agent. */
export const INSPECT_JOB_TTL_MS = 60_000;

/** Inspection job ids: the agent's reports under such an id go to the inspection (services/index.ts jobs.apply). */
export const INSPECT_JOB_PREFIX = 'ijob';
export const isInspectionJob = (jobId: string) => jobId.startsWith(`${INSPECT_JOB_PREFIX}_`);

/** The protocol version of an agent connected to this replica; null when its connection is elsewhere (or none). */
export type ConnectedVersionOf = (agentId: string) => AgentProtocolVersion | null;

const changed = (id: string, state: InspectionState): Effect => ({
  kind: 'inspection',
  inspectionId: id,
  state,
});

export interface Inspection {
  jobId: string;
  agentId: string;
  pid: number;
  what: InspectProcessBody['what'];
  envelope: JobEnvelopeV2;
}

export async function startInspection(
  db: PrismaClient,
  actor: Actor,
  body: InspectProcessBody,
  deps: {
    signing: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>;
    agentVersionOf: ConnectedVersionOf;
    /** The deployment's own narrowing of who may inspect (PYREACH_INSPECT_ROLES); absent: every allowed role. */
    allowedRoles?: readonly string[];
  },
  now: Date = new Date(),
): Promise<Outcome<Inspection>> {
  assertCan(actor, 'process:inspect');
  if (deps.allowedRoles && 'role' in actor && !deps.allowedRoles.includes(actor.role))
    throw new AppError('FORBIDDEN', `role ${actor.role} may not inspect on this control plane`, {
      userMessage: deps.allowedRoles.length
        ? `inspection is limited to ${deps.allowedRoles.join(', ')} on this control plane (PYREACH_INSPECT_ROLES)`
        : 'inspection is switched off on this control plane (PYREACH_INSPECT_ROLES=none)',
    });
  return db.$transaction(async (tx) => {
    const proc = await tx.pythonProcess.findFirst({
      where: { pid: body.pid, startTime: body.startTime, host: { agentId: body.agentId } },
    });
    if (!proc)
      throw new AppError(
        'NOT_FOUND',
        `process ${body.pid} (start ${body.startTime}) not on agent ${body.agentId}`,
        {
          userMessage:
            'process not found on that host (it may have exited): pick it again from the fleet view',
        },
      );
    const agent = await tx.agent.findUnique({
      where: { id: body.agentId },
      select: { status: true, revokedAt: true },
    });
    if (!agent || agent.revokedAt || agent.status !== 'online')
      throw new AppError(
        'AGENT_OFFLINE',
        `agent ${body.agentId} is ${agent?.revokedAt ? 'revoked' : 'offline'}`,
        {
          userMessage: agent?.revokedAt
            ? "this host's agent is revoked: it cannot inspect"
            : "this host's agent is offline: an inspection needs it connected (try again when it is back)",
        },
      );
    const version = deps.agentVersionOf(body.agentId);
    if (version !== null && version < 2)
      throw new AppError(
        'UNSUPPORTED_VERSION',
        `agent ${body.agentId} speaks job protocol v1: no inspection jobs`,
        {
          userMessage:
            "this host's agent is too old to inspect processes (it speaks job protocol v1): upgrade the agent",
        },
      );
    const jobId = newId(INSPECT_JOB_PREFIX);
    const payload: JobPayloadV2 = {
      v: 2,
      jobId,
      agentId: body.agentId,
      requestId: newId('insp'),
      target: { pid: body.pid, startTime: body.startTime },
      contentHash: '0'.repeat(64),
      approvals: [],
      breakGlass: false,
      issuedAt: now.toISOString(),
      notAfter: new Date(now.getTime() + INSPECT_JOB_TTL_MS).toISOString(),
      action: 'inspect',
      what: body.what,
    };
    const envelope = signJobV2(payload, deps.signing.privateKey, deps.signing.publicKey);
    await tx.processInspection.create({
      data: {
        id: jobId,
        agentId: body.agentId,
        pid: body.pid,
        startTime: body.startTime,
        what: body.what,
        requestedBy: actor.type === 'system' ? actor.name : actor.id,
        state: 'queued',
        envelope: envelope as unknown as object,
        notAfter: new Date(payload.notAfter),
        createdAt: now,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'process.inspect',
        subjectType: 'process',
        subjectId: proc.id,
        data: {
          jobId,
          agentId: body.agentId,
          pid: body.pid,
          startTime: body.startTime,
          what: body.what,
          ...actorData(actor),
        },
      },
      now,
    );
    return outcome({ jobId, agentId: body.agentId, pid: body.pid, what: body.what, envelope }, [
      changed(jobId, 'queued'),
      { kind: 'wake', why: 'inspect' },
    ]);
  });
}

/** A queued inspection job claimed for the wire by the replica that holds its agent's connection. */
export interface ClaimedInspection {
  jobId: string;
  agentId: string;
  envelope: JobEnvelopeV2;
}

/**
 * The queued inspections of agents connected here, claimed `queued → sent` (one replica wins each: the update is
 * conditional on the state). An agent that turned out to speak only v1 gets none: the inspection ends refused,
 * naming the upgrade; one past its notAfter is left to expiry.
 */
export async function claimInspections(
  db: PrismaClient,
  connectedAgentIds: readonly string[],
  versionOf: (agentId: string) => AgentProtocolVersion,
  now: Date = new Date(),
  limit = 200,
): Promise<Outcome<ClaimedInspection[]>> {
  if (connectedAgentIds.length === 0) return outcome([]);
  const queued = await db.processInspection.findMany({
    where: { state: 'queued', agentId: { in: [...connectedAgentIds] }, notAfter: { gt: now } },
    select: { id: true, agentId: true, envelope: true },
    orderBy: { createdAt: 'asc' },
    take: limit,
  });
  const claimed: ClaimedInspection[] = [];
  const effects: Effect[] = [];
  for (const row of queued) {
    const v1 = versionOf(row.agentId) < 2;
    const { count } = await db.processInspection.updateMany({
      where: { id: row.id, state: 'queued' },
      data: v1
        ? {
            state: 'refused',
            errorCode: 'UNSUPPORTED_VERSION',
            message:
              "this host's agent is too old to inspect processes (it speaks job protocol v1): upgrade the agent",
            finishedAt: now,
          }
        : { state: 'sent', sentAt: now },
    });
    if (count !== 1) continue;
    effects.push(changed(row.id, v1 ? 'refused' : 'sent'));
    if (!v1)
      claimed.push({
        jobId: row.id,
        agentId: row.agentId,
        envelope: row.envelope as unknown as JobEnvelopeV2,
      });
  }
  return outcome(claimed, effects);
}

/**
 * The agent refused the inspection job in its ack (a forged or stale one, its own limits): the inspection ends
 * refused with the agent's reason. A transport failure (no ack) concludes nothing: the agent may still report,
 * and expiry ends it otherwise.
 */
export async function inspectionDispatchRefused(
  db: PrismaClient,
  agentId: string,
  jobId: string,
  error: { code: string; message: string },
  transport: boolean,
  now: Date = new Date(),
): Promise<Outcome<boolean>> {
  if (transport) return outcome(false);
  const { count } = await db.processInspection.updateMany({
    where: { id: jobId, agentId, state: 'sent' },
    data: { state: 'refused', errorCode: error.code, message: error.message, finishedAt: now },
  });
  return outcome(count === 1, [count === 1 && changed(jobId, 'refused')]);
}

/** Inspections not delivered, or not answered, by their job's notAfter end `expired` (run by housekeeping). */
export async function expireInspections(db: PrismaClient, now: Date = new Date()): Promise<Outcome<number>> {
  const overdue = await db.processInspection.findMany({
    where: { state: { in: inspectionStatesBefore('expired') }, notAfter: { lte: now } },
    select: { id: true, state: true },
    take: 500,
  });
  const effects: Effect[] = [];
  for (const row of overdue) {
    const { count } = await db.processInspection.updateMany({
      where: { id: row.id, state: row.state },
      data: {
        state: 'expired',
        errorCode: row.state === 'queued' ? 'NOT_DELIVERED' : 'NO_REPORT',
        message:
          row.state === 'queued'
            ? 'the agent was not connected before the inspection job expired'
            : 'the agent took the job but did not report before it expired',
        finishedAt: now,
      },
    });
    if (count === 1) effects.push(changed(row.id, 'expired'));
  }
  return outcome(effects.length, effects);
}

/** Largest stored report (canonical JSON text); a larger one is kept as failed RESULT_TOO_LARGE. */
export const MAX_INSPECTION_RESULT_BYTES = 1024 * 1024;

/**
 * The agent's `result` or `refused` event for an inspection job. Only the agent the job was addressed to can end
 * it, once (a second report, or another agent's, changes nothing). The refusal's reason (e.g. its local policy
 * for opted-out targets) is kept as the agent said it. Returns whether an inspection took the event.
 */
export async function recordInspectionEvent(
  db: PrismaClient,
  agentId: string,
  ev: JobEvent,
  now: Date = new Date(),
): Promise<Outcome<boolean>> {
  if (ev.type !== 'result' && ev.type !== 'refused') return outcome(false);
  let data: { state: InspectionState; result?: object; errorCode: string | null; message: string | null };
  if (ev.type === 'refused') {
    data = { state: 'refused', errorCode: ev.code, message: ev.message };
  } else {
    const r = ev.result;
    const text = JSON.stringify(r.result ?? null);
    if (Buffer.byteLength(text) > MAX_INSPECTION_RESULT_BYTES)
      data = {
        state: 'failed',
        errorCode: 'RESULT_TOO_LARGE',
        message: `the agent's report is ${Buffer.byteLength(text)} bytes, more than ${MAX_INSPECTION_RESULT_BYTES} stored`,
      };
    else
      data = {
        state: r.status === 'succeeded' ? 'succeeded' : 'failed',
        ...(r.result !== undefined && r.result !== null ? { result: r.result as object } : {}),
        errorCode: r.errorCode ?? null,
        message: r.message ?? null,
      };
  }
  const { count } = await db.processInspection.updateMany({
    where: { id: ev.jobId, agentId, state: 'sent' },
    data: { ...data, finishedAt: now },
  });
  return outcome(count === 1, [count === 1 && changed(ev.jobId, data.state)]);
}

/** One inspection, its report parsed with its protocol schema (a report that does not parse reads as null). */
export async function inspectionView(db: PrismaClient, actor: Actor, id: string): Promise<InspectionView> {
  assertCan(actor, 'process:inspect');
  const row = await db.processInspection.findUnique({ where: { id } });
  if (!row)
    throw new AppError('NOT_FOUND', `inspection ${id} not found`, { userMessage: 'inspection not found' });
  const stacks = row.what === 'stacks' ? StacksReport.safeParse(row.result) : null;
  const tasks = row.what === 'tasks' ? TasksReport.safeParse(row.result) : null;
  const unparsed = row.result !== null && !(stacks?.success || tasks?.success);
  return {
    id: row.id,
    agentId: row.agentId,
    pid: row.pid,
    startTime: row.startTime,
    what: row.what === 'tasks' ? 'tasks' : 'stacks',
    requestedBy: row.requestedBy,
    state: row.state as InspectionState,
    stacks: stacks?.success ? stacks.data : null,
    tasks: tasks?.success ? tasks.data : null,
    errorCode: unparsed ? 'MALFORMED_REPORT' : row.errorCode,
    message: unparsed ? 'the stored report does not match its protocol schema' : row.message,
    createdAt: row.createdAt.toISOString(),
    finishedAt: row.finishedAt?.toISOString() ?? null,
  };
}
