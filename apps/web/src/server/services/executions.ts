import { DEFAULT_OUTPUT_CAP_BYTES } from '@pyreach/protocol/common';
import type { JobEvent } from '@pyreach/protocol/agent';
import { encodeString } from '@pyreach/protocol/text';
import {
  CORRECTABLE_EXECUTION_STATES,
  IN_FLIGHT_EXECUTION_STATES,
  canTransition,
  type ExecutionState,
  type RequestState,
} from '@pyreach/protocol/states';
import type { Execution, PrismaClient, Tx } from '@pyreach/db';
import { SYSTEM, type Actor } from './actor';
import { appendAudit, appendAuditMany, type AuditInput } from './audit';
import { completeIfDone, correctCompleted } from './dispatch';
import { scheduleRestoreChecks, undoesItself } from './restore';
import { outcome, secondsBetween, type Effect, type ExecutionTimings, type Outcome } from './effects';
import { AppError } from './errors';
import { executionStateOf, requestStateOf } from './rows';

export const OUTPUT_TRUNCATED_MARKER = '\n[pyreach: output truncated by the control plane]\n';

/** One agent report: applied now, or seen before (acknowledge, change nothing). */
export type Applied = 'applied' | 'duplicate';

const executionChanged = (
  ex: Pick<Execution, 'id' | 'requestId' | 'state' | 'errorCode'>,
  timings?: ExecutionTimings,
  seq?: number,
): Effect => ({
  kind: 'execution',
  requestId: ex.requestId,
  executionId: ex.id,
  state: executionStateOf(ex.state),
  errorCode: ex.errorCode,
  ...(seq !== undefined ? { seq } : {}),
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
): { output: string; bytes: number; dropped: number } {
  const buf = Buffer.from(chunk, 'utf8');
  if (currentBytes >= cap) return { output: current, bytes: currentBytes, dropped: buf.byteLength };
  const room = cap - currentBytes;
  if (buf.byteLength <= room)
    return { output: current + chunk, bytes: currentBytes + buf.byteLength, dropped: 0 };
  // Cut on a character boundary, then mark the cut once; bytes pins at the cap so nothing more is appended.
  const cut = buf
    .subarray(0, room)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return {
    output: current + cut + OUTPUT_TRUNCATED_MARKER,
    bytes: cap,
    dropped: buf.byteLength - Buffer.byteLength(cut, 'utf8'),
  };
}

/** One agent report, as the gateway received it. */
export interface JobReport {
  agentId: string;
  ev: JobEvent;
}

/** What became of one report of a batch: applied (or seen before) with what it changed, or refused. */
export type ReportVerdict = { ok: true; outcome: Outcome<Applied> } | { ok: false; error: unknown };

type Loaded = Execution & {
  request: { state: string; kind: string; scriptId: string | null };
  agent: { name: string };
};
type ExecutionData = Parameters<Tx['execution']['update']>[0]['data'];

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
 * them to browsers needs no second trip to the database. A batch of one of `applyJobEvents`.
 */
export async function applyJobEvent(
  db: PrismaClient,
  agentId: string,
  ev: JobEvent,
  opts: { outputCapBytes?: number; now?: Date } = {},
): Promise<Outcome<Applied>> {
  const [v] = await applyJobEvents(db, [{ agentId, ev }], opts);
  if (!v!.ok) throw v!.error;
  return v!.outcome;
}

/**
 * Applies reports waiting at the gate in ONE transaction (issue 15): the executions they name locked in id order
 * (two replicas' batches never deadlock), each report judged in arrival order against the state its
 * predecessors in the batch left (so a job's output chunks and its result may share a batch), one update per
 * execution, ONE multi-row audit append (chain order = report order), then each touched request's completion.
 * A report refused on its merits (unknown job, another agent's, out of order) fails alone inside the batch. If
 * the database refuses the batch as a whole (one report's data it cannot store, a lost connection), nothing of
 * it was written: every report is applied again in a transaction of its own, so the bad one fails alone and its
 * batch-mates land. The verdicts come back in the order of `reports`, all after the commit: a caller that
 * acknowledges a report only after its verdict never acknowledges what was not stored.
 */
export async function applyJobEvents(
  db: PrismaClient,
  reports: readonly JobReport[],
  opts: {
    outputCapBytes?: number;
    now?: Date;
    /** The database refused a batch of several as a whole (it is being applied one by one): for the log. */
    onBatchRefused?: (err: unknown, reports: number) => void;
  } = {},
): Promise<ReportVerdict[]> {
  if (reports.length === 0) return [];
  try {
    return await db.$transaction((tx) => applyInTx(tx, reports, opts), {
      timeout: 30_000 + reports.length * 20,
    });
  } catch (err) {
    if (reports.length === 1) return [{ ok: false, error: err }];
    opts.onBatchRefused?.(err, reports.length);
    const verdicts: ReportVerdict[] = [];
    for (const r of reports) verdicts.push(...(await applyJobEvents(db, [r], opts)));
    return verdicts;
  }
}

async function applyInTx(
  tx: Tx,
  reports: readonly JobReport[],
  opts: { outputCapBytes?: number; now?: Date },
): Promise<ReportVerdict[]> {
  const now = opts.now ?? new Date();
  const cap = opts.outputCapBytes ?? DEFAULT_OUTPUT_CAP_BYTES;
  const jobIds = [...new Set(reports.map((r) => r.ev.jobId))].sort();
  await tx.$queryRawUnsafe(
    'SELECT id FROM "execution" WHERE "jobId" = ANY($1::text[]) ORDER BY id FOR UPDATE',
    jobIds,
  );
  const rows: Loaded[] = await tx.execution.findMany({
    where: { jobId: { in: jobIds } },
    include: {
      request: { select: { state: true, kind: true, scriptId: true } },
      agent: { select: { name: true } },
    },
  });
  const byJob = new Map(rows.map((ex) => [ex.jobId, { ex, cur: { ...ex }, data: {} as ExecutionData }]));
  const audits: AuditInput[] = [];
  const verdicts: (ReportVerdict | { pending: Effect[]; requestId: string; finished: boolean })[] = [];
  /** Requests with an execution that just ended, and whether one of those ends corrected our guess. */
  const ended = new Map<string, { corrected: boolean }>();

  for (const { agentId, ev } of reports) {
    const e = byJob.get(ev.jobId);
    if (!e) {
      verdicts.push({ ok: false, error: new AppError('NOT_FOUND', `unknown job ${ev.jobId}`) });
      continue;
    }
    const { ex, cur } = e;
    if (ex.agentId !== agentId) {
      verdicts.push({
        ok: false,
        error: new AppError('FORBIDDEN', `job ${ev.jobId} was not sent to this agent`),
      });
      continue;
    }
    if (ev.seq <= cur.lastSeq) {
      verdicts.push({ ok: true, outcome: outcome<Applied>('duplicate') });
      continue;
    }
    if (ev.seq > cur.lastSeq + 1) {
      verdicts.push({
        ok: false,
        error: new AppError(
          'OUT_OF_ORDER',
          `expected seq ${cur.lastSeq + 1} for job ${ev.jobId}, got ${ev.seq}`,
        ),
      });
      continue;
    }
    const before = { ...cur };
    const from = executionStateOf(cur.state);
    const data = judge(cur, ev, now, cap);
    Object.assign(e.data, data);
    Object.assign(cur, data);
    const to = data.state as ExecutionState | undefined;
    const corrected = to !== undefined && CORRECTABLE_EXECUTION_STATES.has(from);
    if (to !== undefined)
      audits.push({
        actor: { type: 'agent', id: agentId, name: ex.agent.name },
        action: corrected
          ? 'execution.correct'
          : ev.type === 'refused'
            ? 'execution.refuse'
            : ev.type === 'result'
              ? 'execution.result'
              : to === 'picked_up'
                ? 'execution.pickup'
                : 'execution.stage',
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
      });
    const finished = ev.type === 'result' || ev.type === 'refused';
    if (to !== undefined && finished) {
      const was = ended.get(ex.requestId);
      ended.set(ex.requestId, { corrected: (was?.corrected ?? false) || corrected });
    }
    verdicts.push({
      requestId: ex.requestId,
      pending: [
        ev.type === 'output' && {
          kind: 'output',
          requestId: ex.requestId,
          executionId: ex.id,
          seq: ev.seq,
          chunk: ev.chunk,
        },
        executionChanged(
          { ...ex, state: cur.state, errorCode: cur.errorCode },
          timingsOf(before, data as { state?: unknown; pickedUpAt?: unknown; finishedAt?: unknown }),
          ev.seq,
        ),
      ].filter((x): x is Effect => !!x),
      finished,
    });
  }

  const succeeded: string[] = [];
  for (const { ex, data } of byJob.values()) {
    if (Object.keys(data).length) await tx.execution.update({ where: { id: ex.id }, data });
    if (data.state === 'succeeded' && undoesItself(ex.request)) succeeded.push(ex.id);
  }
  await appendAuditMany(tx, audits, now);
  // A change that undoes itself: its check at expiry is scheduled with the success that made it (durable).
  await scheduleRestoreChecks(tx, succeeded, now);
  const completed = new Map<string, RequestState | null>();
  for (const [requestId, { corrected }] of [...ended].sort(([a], [b]) => a.localeCompare(b)))
    completed.set(
      requestId,
      corrected
        ? ((await completeIfDone(tx, requestId, now)) ?? (await correctCompleted(tx, requestId, now)))
        : await completeIfDone(tx, requestId, now),
    );
  const requestStateBefore = new Map(rows.map((ex) => [ex.requestId, requestStateOf(ex.request.state)]));
  return verdicts.map((v) => {
    if (!('pending' in v)) return v;
    const state = completed.get(v.requestId) ?? requestStateBefore.get(v.requestId)!;
    return {
      ok: true,
      outcome: outcome<Applied>('applied', [
        ...v.pending,
        {
          kind: 'request',
          requestId: v.requestId,
          state,
          progress: state === requestStateBefore.get(v.requestId),
        },
        // A finished job frees a rollout slot.
        ...(v.finished ? [{ kind: 'wake', why: 'job-finished' } as const] : []),
      ]),
    };
  });
}

/** What one in-order report changes on an execution whose current state is `cur` (no database work). */
function judge(cur: Execution, ev: JobEvent, now: Date, cap: number): ExecutionData {
  const from = executionStateOf(cur.state);
  const data: ExecutionData = { lastSeq: ev.seq };
  switch (ev.type) {
    case 'state':
      if (canTransition(from, ev.state)) {
        data.state = ev.state;
        data.queuedBehindJobId = null;
        data.queuedAhead = null;
        if (ev.state === 'staged') data.stagedAt = now;
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
      const out = appendCapped(cur.output, cur.outputBytes, ev.chunk, cap);
      data.output = out.output;
      data.outputBytes = out.bytes;
      if (out.dropped > 0) data.outputDroppedBytes = (cur.outputDroppedBytes ?? 0) + out.dropped;
      break;
    }
    case 'result': {
      const r = ev.result;
      if (canTransition(from, r.status)) {
        data.state = r.status;
        data.result = r.result === undefined ? undefined : (r.result as object);
        data.errorCode = r.status === 'succeeded' ? null : (r.errorCode ?? 'INTERNAL');
        data.errorMessage = r.message ?? r.error?.message ?? null;
        data.error = r.error ?? undefined;
        data.thread = r.thread ?? undefined;
        data.leftoverThread = r.leftoverThread ?? undefined;
        data.queuedBehindJobId = null;
        data.queuedAhead = null;
        data.finishedAt = r.finishedAt ? new Date(r.finishedAt) : now;
        if (r.pickedUpAt && !cur.pickedUpAt) data.pickedUpAt = new Date(r.pickedUpAt);
        // The result carries the whole captured output; it supersedes the streamed chunks.
        if (r.output.length > 0 || cur.output.length === 0) {
          const out = appendCapped('', 0, r.output, cap);
          data.output =
            r.outputTruncated && out.bytes < cap ? out.output + OUTPUT_TRUNCATED_MARKER : out.output;
          data.outputBytes = out.bytes;
          // What was cut before us (counted by the harness and the agent) and by our own cap.
          const counted = r.outputDroppedBytes !== undefined || out.dropped > 0;
          data.outputDroppedBytes = counted ? (r.outputDroppedBytes ?? 0) + out.dropped : null;
        }
      }
      break;
    }
    case 'refused':
      if (canTransition(from, 'refused')) {
        data.state = 'refused';
        data.errorCode = ev.code;
        data.errorMessage = ev.message;
        data.finishedAt = now;
      }
      break;
  }
  // undefined means "leave as is" to Prisma; keep it out of the in-memory copy too.
  for (const k of Object.keys(data) as (keyof ExecutionData)[]) if (data[k] === undefined) delete data[k];
  return data;
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
