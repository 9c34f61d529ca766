/**
 * `process:inspect`: a person (or token) asks an agent to read one process's thread stacks or asyncio tasks from
 * outside. Nothing runs in the target, so no approval is needed by default; every inspection is audited (who,
 * which process, what) in the same transaction that signs its job. Agents older than protocol v2 cannot inspect:
 * they are refused with an "upgrade the agent" message before anything is signed.
 */
import type { InspectProcessBody, InspectionView } from '@pyreach/protocol/api';
import type { JobEvent } from '@pyreach/protocol/agent';
import { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { signJobV2, type JobEnvelopeV2, type JobPayloadV2 } from '@pyreach/protocol/job';
import type { PrismaClient } from '@pyreach/db';
import { actorData, assertCan, type Actor } from './actor';
import { appendAudit } from './audit';
import type { AgentVersionOf } from './dispatch';
import { outcome, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import type { SigningKeyPair } from './signing';

/** How long an inspection job stays valid for its agent. */
export const INSPECT_JOB_TTL_MS = 60_000;

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
  deps: { signing: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>; agentVersionOf: AgentVersionOf },
  now: Date = new Date(),
): Promise<Outcome<Inspection>> {
  assertCan(actor, 'process:inspect');
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
    if (deps.agentVersionOf(body.agentId) < 2)
      throw new AppError(
        'UNSUPPORTED_VERSION',
        `agent ${body.agentId} speaks job protocol v1: no inspection jobs`,
        {
          userMessage:
            "this host's agent is too old to inspect processes (it speaks job protocol v1): upgrade the agent",
        },
      );
    const jobId = newId('job');
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
    await tx.processInspection.create({
      data: {
        id: jobId,
        agentId: body.agentId,
        pid: body.pid,
        startTime: body.startTime,
        what: body.what,
        requestedBy: actor.type === 'system' ? actor.name : actor.id,
        createdAt: now,
      },
    });
    const envelope = signJobV2(payload, deps.signing.privateKey, deps.signing.publicKey);
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
    return outcome({ jobId, agentId: body.agentId, pid: body.pid, what: body.what, envelope });
  });
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
  let data: { state: string; result?: object; errorCode: string | null; message: string | null };
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
  return outcome(count === 1);
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
    state: row.state as InspectionView['state'],
    stacks: stacks?.success ? stacks.data : null,
    tasks: tasks?.success ? tasks.data : null,
    errorCode: unparsed ? 'MALFORMED_REPORT' : row.errorCode,
    message: unparsed ? 'the stored report does not match its protocol schema' : row.message,
    createdAt: row.createdAt.toISOString(),
    finishedAt: row.finishedAt?.toISOString() ?? null,
  };
}
