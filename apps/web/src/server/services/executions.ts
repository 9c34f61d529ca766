import { DEFAULT_OUTPUT_CAP_BYTES } from '@pyreach/protocol/common';
import type { JobEvent } from '@pyreach/protocol/agent';
import { encodeString } from '@pyreach/protocol/text';
import {
  CORRECTABLE_EXECUTION_STATES,
  IN_FLIGHT_EXECUTION_STATES,
  canTransition,
  type ExecutionState,
} from '@pyreach/protocol/states';
import type { Execution, PrismaClient, Tx } from '@pyreach/db';
import { SYSTEM, type Actor } from './actor';
import { appendAudit } from './audit';
import { completeIfDone, correctCompleted } from './dispatch';
import { outcome, secondsBetween, type Effect, type ExecutionTimings, type Outcome } from './effects';
import { AppError } from './errors';
import { executionStateOf, requestStateOf } from './rows';

export const OUTPUT_TRUNCATED_MARKER = '\n[pyreach: output truncated by the control plane]\n';

/** One agent report: applied now, or seen before (acknowledge, change nothing). */
export type Applied = 'applied' | 'duplicate';

const executionChanged = (
  ex: Pick<Execution, 'id' | 'requestId' | 'state' | 'errorCode'>,
  timings?: ExecutionTimings,
): Effect => ({
  kind: 'execution',
  requestId: ex.requestId,
  executionId: ex.id,
  state: executionStateOf(ex.state),
  errorCode: ex.errorCode,
  ...(timings ? { timings } : {}),
});

/**
 * The stages a real transition of `ex` ends (the metrics' latency histograms): picked up ends the pickup, an
 * end from a picked-up job ends its run (and its pickup too when the result is the first word of it).
 */
function timingsOf(
  ex: Pick<Execution, 'sentAt' | 'pickedUpAt'>,
  data: { state?: unknown; pickedUpAt?: unknown; finishedAt?: unknown },
): ExecutionTimings | undefined {
  if (data.state === undefined) return undefined;
  const pickedUp = (data.pickedUpAt as Date | undefined) ?? ex.pickedUpAt;
  const t: ExecutionTimings = {};
  if (data.pickedUpAt && !ex.pickedUpAt) t.pickupSeconds = secondsBetween(ex.sentAt, pickedUp);
  if (data.finishedAt) t.runSeconds = secondsBetween(pickedUp, data.finishedAt as Date);
  return t.pickupSeconds === undefined && t.runSeconds === undefined ? undefined : t;
}

function appendCapped(
  current: string,
  currentBytes: number,
  chunk: string,
  cap: number,
): { output: string; bytes: number } {
  if (currentBytes >= cap) return { output: current, bytes: currentBytes };
  const room = cap - currentBytes;
  const buf = Buffer.from(chunk, 'utf8');
  if (buf.byteLength <= room) return { output: current + chunk, bytes: currentBytes + buf.byteLength };
  // Cut on a character boundary, then mark the cut once; bytes pins at the cap so nothing more is appended.
  const cut = buf
    .subarray(0, room)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return { output: current + cut + OUTPUT_TRUNCATED_MARKER, bytes: cap };
}

/**
 * Applies one report from an agent about one of its jobs, exactly once and in order:
 * - only the agent the execution was sent to (FORBIDDEN otherwise; NOT_FOUND for an unknown job);
 * - `seq` must be lastSeq + 1; lower is a duplicate (acknowledge), higher is OUT_OF_ORDER (the agent resends in order);
 * - state changes only along canTransition (an impossible move consumes the seq but changes nothing);
 * - output is appended up to `outputCapBytes` with a visible marker;
 * - a result sets the state from its status — `succeeded` only when the harness said so; a result for an
 *   execution the control plane had given up on (`expired`, `agent_lost`: our guess) replaces the guess and is
 *   audited as `execution.correct` with both states;
 * - a `queued` report (the agent runs one job per target process at a time) records the job it waits behind;
 * - pickup, result and refusal are audited; the request completes when its last execution ends.
 * Refusals are AppErrors (NOT_FOUND, FORBIDDEN, OUT_OF_ORDER) that change nothing. The effects say what changed
 * (the execution, its output, its request, a freed rollout slot), read in the same transaction: whoever pushes
 * them to browsers needs no second trip to the database.
 */
export async function applyJobEvent(
  db: PrismaClient,
  agentId: string,
  ev: JobEvent,
  opts: { outputCapBytes?: number; now?: Date } = {},
): Promise<Outcome<Applied>> {
  const now = opts.now ?? new Date();
  const cap = opts.outputCapBytes ?? DEFAULT_OUTPUT_CAP_BYTES;
  return db.$transaction(async (tx): Promise<Outcome<Applied>> => {
    await tx.$queryRawUnsafe('SELECT id FROM "execution" WHERE "jobId" = $1 FOR UPDATE', ev.jobId);
    const ex = await tx.execution.findUnique({
      where: { jobId: ev.jobId },
      include: { request: { select: { state: true } }, agent: { select: { name: true } } },
    });
    if (!ex) throw new AppError('NOT_FOUND', `unknown job ${ev.jobId}`);
    if (ex.agentId !== agentId) throw new AppError('FORBIDDEN', `job ${ev.jobId} was not sent to this agent`);
    if (ev.seq <= ex.lastSeq) return outcome('duplicate');
    if (ev.seq > ex.lastSeq + 1)
      throw new AppError('OUT_OF_ORDER', `expected seq ${ex.lastSeq + 1} for job ${ev.jobId}, got ${ev.seq}`);
    const agent: Actor = { type: 'agent', id: agentId, name: ex.agent.name };
    const from = executionStateOf(ex.state);
    const data: Parameters<typeof tx.execution.update>[0]['data'] = { lastSeq: ev.seq };
    let to: ExecutionState | null = null;
    switch (ev.type) {
      case 'state':
        to = ev.state;
        if (canTransition(from, to)) {
          data.state = to;
          data.queuedBehindJobId = null;
          data.queuedAhead = null;
          if (to === 'staged') data.stagedAt = now;
          else data.pickedUpAt = now;
        }
        break;
      case 'queued':
        // Only while it has not started: a late duplicate must not make a running job look queued again.
        if (from === 'sent') {
          data.queuedBehindJobId = ev.behindJobId;
          data.queuedAhead = ev.ahead;
        }
        break;
      case 'output': {
        const out = appendCapped(ex.output, ex.outputBytes, ev.chunk, cap);
        data.output = out.output;
        data.outputBytes = out.bytes;
        break;
      }
      case 'result': {
        const r = ev.result;
        to = r.status;
        if (canTransition(from, to)) {
          data.state = to;
          data.result = r.result === undefined ? undefined : (r.result as object);
          data.errorCode = r.status === 'succeeded' ? null : (r.errorCode ?? 'INTERNAL');
          data.errorMessage = r.message ?? r.error?.message ?? null;
          data.error = r.error ?? undefined;
          data.thread = r.thread ?? undefined;
          data.leftoverThread = r.leftoverThread ?? undefined;
          data.queuedBehindJobId = null;
          data.queuedAhead = null;
          data.finishedAt = r.finishedAt ? new Date(r.finishedAt) : now;
          if (r.pickedUpAt && !ex.pickedUpAt) data.pickedUpAt = new Date(r.pickedUpAt);
          // The result carries the whole captured output; it supersedes the streamed chunks.
          if (r.output.length > 0 || ex.output.length === 0) {
            const out = appendCapped('', 0, r.output, cap);
            data.output =
              r.outputTruncated && out.bytes < cap ? out.output + OUTPUT_TRUNCATED_MARKER : out.output;
            data.outputBytes = out.bytes;
          }
        }
        break;
      }
      case 'refused':
        to = 'refused';
        if (canTransition(from, to)) {
          data.state = 'refused';
          data.errorCode = ev.code;
          data.errorMessage = ev.message;
          data.finishedAt = now;
        }
        break;
    }
    await tx.execution.update({ where: { id: ex.id }, data });
    if (data.state !== undefined) {
      const corrected = CORRECTABLE_EXECUTION_STATES.has(from);
      const action = corrected
        ? 'execution.correct'
        : ev.type === 'refused'
          ? 'execution.refuse'
          : ev.type === 'result'
            ? 'execution.result'
            : to === 'picked_up'
              ? 'execution.pickup'
              : 'execution.stage';
      await appendAudit(
        tx,
        {
          actor: agent,
          action,
          subjectType: 'execution',
          subjectId: ex.id,
          data: {
            jobId: ex.jobId,
            requestId: ex.requestId,
            from,
            to,
            errorCode: (data.errorCode as string | null | undefined) ?? null,
            ...(corrected ? { correction: `${from} → ${to}: the agent delivered the real outcome` } : {}),
            ...(ev.type === 'result' && ev.result.refusedReport
              ? { refusedReport: ev.result.refusedReport }
              : {}),
            ...(ev.type === 'result' && ev.result.leftoverThread
              ? { leftoverThread: ev.result.leftoverThread }
              : {}),
          },
        },
        now,
      );
    }
    const finished = ev.type === 'result' || ev.type === 'refused';
    const changed = data.state !== undefined && finished;
    const completed = !changed
      ? null
      : CORRECTABLE_EXECUTION_STATES.has(from)
        ? ((await completeIfDone(tx, ex.requestId, now)) ?? (await correctCompleted(tx, ex.requestId, now)))
        : await completeIfDone(tx, ex.requestId, now);
    return outcome<Applied>('applied', [
      ev.type === 'output' && {
        kind: 'output',
        requestId: ex.requestId,
        executionId: ex.id,
        seq: ev.seq,
        chunk: ev.chunk,
      },
      executionChanged(
        {
          ...ex,
          state: (data.state as string | undefined) ?? ex.state,
          errorCode: data.errorCode === undefined ? ex.errorCode : (data.errorCode as string | null),
        },
        timingsOf(ex, data),
      ),
      { kind: 'request', requestId: ex.requestId, state: completed ?? requestStateOf(ex.request.state) },
      // A finished job frees a rollout slot.
      finished && { kind: 'wake', why: 'job-finished' },
    ]);
  });
}

/**
 * The control plane refused one of an agent's reports for good (malformed, or data the database cannot hold):
 * audited as `execution.report_refused` with the reason, so the refusal is on record on this side too (the
 * agent records it and sends a REPORT_REFUSED result in its place). Nothing else changes here; an unknown job
 * or another agent's is not recorded (that refusal is about the sender, not the job).
 */
export async function recordReportRefusal(
  db: PrismaClient,
  agentId: string,
  report: { jobId: string; seq: number; type: string },
  refusal: { code: string; message: string },
  now: Date = new Date(),
): Promise<Outcome<boolean>> {
  return db.$transaction(async (tx) => {
    const ex = await tx.execution.findUnique({
      where: { jobId: report.jobId },
      select: { id: true, agentId: true, requestId: true, jobId: true, agent: { select: { name: true } } },
    });
    if (!ex || ex.agentId !== agentId) return outcome(false);
    await appendAudit(
      tx,
      {
        actor: { type: 'agent', id: agentId, name: ex.agent.name },
        action: 'execution.report_refused',
        subjectType: 'execution',
        subjectId: ex.id,
        data: {
          jobId: ex.jobId,
          requestId: ex.requestId,
          seq: report.seq,
          type: report.type.slice(0, 32),
          code: refusal.code.slice(0, 64),
          // The reason may quote what was refused: stored as safe text (no NUL or raw control characters).
          message: encodeString(refusal.message.slice(0, 1024)),
        },
      },
      now,
    );
    return outcome(true);
  });
}

/** Ack codes that are not a decision of the agent: the job may well have arrived, so nothing is concluded. */
/** Dispatch failures that say nothing about the agent's decision (no ack, or an ack that could not be read). */
export const TRANSPORT_FAILURES = new Set(['ACK_TIMEOUT', 'AGENT_OFFLINE', 'BAD_ACK']);

/**
 * The agent answered `job:dispatch` with a refusal (bad signature, unknown key, replay, wrong agent, expired,
 * policy, busy …). Some refusals never come back as a job event — an agent will not write events under a job
 * id it cannot trust — so the control plane records the refusal here: audited (actor: the agent), and the
 * execution ends `refused` with the agent's code and reason if it is still `sent`. A transport failure (no or
 * malformed answer) decides nothing: the job stays `sent` until the agent reports or it expires. Returns the
 * execution when its state changed.
 */
export async function recordDispatchRefusal(
  db: PrismaClient,
  agentId: string,
  jobId: string,
  refusal: { code: string; message: string },
  now: Date = new Date(),
): Promise<Outcome<Execution | null>> {
  return db.$transaction(async (tx) => {
    await tx.$queryRawUnsafe('SELECT id FROM "execution" WHERE "jobId" = $1 FOR UPDATE', jobId);
    const ex = await tx.execution.findUnique({ where: { jobId } });
    if (!ex || ex.agentId !== agentId) return outcome(null);
    const agentRow = await tx.agent.findUnique({ where: { id: agentId }, select: { name: true } });
    const actor: Actor = { type: 'agent', id: agentId, name: agentRow?.name ?? agentId };
    const transport = TRANSPORT_FAILURES.has(refusal.code);
    const decided = !transport && canTransition(executionStateOf(ex.state), 'refused');
    await appendAudit(
      tx,
      {
        actor,
        action: transport ? 'execution.dispatch_unacknowledged' : 'execution.refuse',
        subjectType: 'execution',
        subjectId: ex.id,
        data: {
          jobId,
          requestId: ex.requestId,
          via: 'dispatch-ack',
          code: refusal.code.slice(0, 64),
          message: refusal.message.slice(0, 1024),
          from: ex.state,
          to: decided ? 'refused' : ex.state,
        },
      },
      now,
    );
    if (!decided) return outcome(null);
    const updated = await tx.execution.update({
      where: { id: ex.id },
      data: {
        state: 'refused',
        errorCode: refusal.code.slice(0, 64),
        errorMessage: refusal.message.slice(0, 4096),
        finishedAt: now,
      },
    });
    await completeIfDone(tx, ex.requestId, now);
    return outcome(updated, [executionChanged(updated), { kind: 'wake', why: 'job-finished' }]);
  });
}

async function loseAll(
  tx: Tx,
  where: { agentId: string },
  code: string,
  message: string,
  now: Date,
): Promise<Execution[]> {
  const execs = await tx.execution.findMany({
    where: { ...where, state: { in: [...IN_FLIGHT_EXECUTION_STATES] } },
  });
  for (const ex of execs) {
    await tx.execution.update({
      where: { id: ex.id },
      data: { state: 'agent_lost', errorCode: code, errorMessage: message, finishedAt: now },
    });
    await appendAudit(
      tx,
      {
        actor: SYSTEM,
        action: 'execution.agent_lost',
        subjectType: 'execution',
        subjectId: ex.id,
        data: { jobId: ex.jobId, requestId: ex.requestId, from: ex.state },
      },
      now,
    );
  }
  for (const requestId of new Set(execs.map((e) => e.requestId))) await completeIfDone(tx, requestId, now);
  return execs;
}

/**
 * Marks the in-flight executions of an agent as `agent_lost` — call after its connection has been gone
 * longer than the grace period. Does nothing if the agent is back online meanwhile. Its durable outbox may
 * still deliver the real outcome later (agent_lost may move on; see canTransition).
 */
export async function markAgentLost(
  db: PrismaClient,
  agentId: string,
  now: Date = new Date(),
): Promise<Outcome<Execution[]>> {
  return db.$transaction(async (tx) => {
    const agent = await tx.agent.findUnique({ where: { id: agentId }, select: { status: true } });
    if (!agent || agent.status === 'online') return outcome([]);
    const code = 'AGENT_LOST';
    const lost = await loseAll(
      tx,
      { agentId },
      code,
      'the agent disconnected while this job was in flight and did not come back in time',
      now,
    );
    return outcome(lost, [
      ...lost.map((ex) => executionChanged({ ...ex, state: 'agent_lost', errorCode: code })),
      lost.length > 0 && { kind: 'wake', why: 'agent-lost' },
    ]);
  });
}

/**
 * Housekeeping: approved requests whose approval ran out become `expired`; queued executions of such requests
 * and sent executions past their notAfter (never picked up) become `expired`; requests whose last execution
 * ended complete. Returns how many rows changed.
 */
export async function expireOverdue(
  db: PrismaClient,
  now: Date = new Date(),
): Promise<Outcome<{ requests: number; executions: number }>> {
  return db.$transaction(async (tx) => {
    const reqs = await tx.injectionRequest.findMany({
      where: { state: 'approved', approvalExpiresAt: { lte: now } },
      select: { id: true },
    });
    for (const r of reqs) {
      await tx.injectionRequest.update({ where: { id: r.id }, data: { state: 'expired', completedAt: now } });
      await appendAudit(
        tx,
        { actor: SYSTEM, action: 'request.expire', subjectType: 'request', subjectId: r.id },
        now,
      );
    }
    const execs = await tx.execution.findMany({
      where: {
        OR: [
          { state: 'queued', request: { state: 'dispatching', approvalExpiresAt: { lte: now } } },
          { state: 'sent', notAfter: { lte: now } },
        ],
      },
    });
    for (const ex of execs) {
      await tx.execution.update({
        where: { id: ex.id },
        data: {
          state: 'expired',
          errorCode: 'EXPIRED',
          errorMessage: 'the job was not picked up before its approval or envelope expired',
          finishedAt: now,
        },
      });
      await appendAudit(
        tx,
        {
          actor: SYSTEM,
          action: 'execution.expire',
          subjectType: 'execution',
          subjectId: ex.id,
          data: { jobId: ex.jobId, requestId: ex.requestId, from: ex.state },
        },
        now,
      );
    }
    for (const requestId of new Set(execs.map((e) => e.requestId))) await completeIfDone(tx, requestId, now);
    const changed = reqs.length + execs.length > 0;
    return outcome({ requests: reqs.length, executions: execs.length }, [
      ...reqs.map((r): Effect => ({ kind: 'request', requestId: r.id, state: 'expired' })),
      ...execs.map((ex) => executionChanged({ ...ex, state: 'expired', errorCode: 'EXPIRED' })),
      changed && { kind: 'fleet', hostId: null },
    ]);
  });
}
