/**
 * From `job:dispatch` to the final `result`: checks, durable bookkeeping in a fixed order, the run through the
 * engine, output streaming, and the honest ending of jobs a previous agent process left unfinished.
 *
 * Order for a trusted job id (signature verified, addressed to us, never seen):
 *   1. seen.jsonl  (fsync)  — from here on this id can never run again, even after a crash
 *   2. jobs/<id>/job.json   — the journal exists, so a crash mid-run is recovered honestly
 *   3. refusal → `refused` event in the journal, audit, failed ack; otherwise audit + accepted ack, then run.
 *
 * One job per target process (pid + start time) at a time: a job for a process that already runs one waits
 * in that process's queue (a `queued` event says behind which job) and starts when the jobs before it are
 * done — or ends `refused`/EXPIRED when its notAfter passes first, `cancelled` on a cancel, `refused`/
 * INTERRUPTED when the agent stops. So the agent's own jobs never race each other inside one target (the
 * engine's cross-process lock covers a CLI run beside the agent). Jobs for other processes run concurrently,
 * at most maxConcurrentJobs at once.
 *
 * Both envelope versions arrive here in v2's shape (checks.ts). Inspection jobs (`action: inspect`) read the
 * target's memory from outside in a child process (inspect.ts) and run no code in it; they do **not** take part
 * in the per-target queue: they never write to the target or pause it, so they cannot race an injection, and an
 * operator inspects a target precisely while something runs in it (where is my job stuck?). They neither wait
 * behind a running job nor hold one up; at most `inspection.maxConcurrent` are read at once.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { DispatchAck, JobRefusalCode, ReportedResult } from '@pyreach/protocol/agent';
import type { ExecResult } from '@pyreach/protocol/exec';
import type { ExecPayloadV2, JobPayloadV2, JobVersion } from '@pyreach/protocol/job';
import type { AuditLog } from './audit';
import { checkJob, untrustedJobId, type CheckOutcome } from './checks';
import type { AgentConfig } from './config';
import type { Engine } from './engine';
import { inspectResult, type InspectOutcome, type Inspector } from './inspect';
import type { JobRecord, Outbox } from './outbox';
import { checkOptedOut } from './policy';
import { readTargetFacts, type TargetFacts } from './procinfo';
import { fitResult, REPORT_MAX_BYTES } from './fit';
import { recoverJob, runIdOf } from './recovery';
import { safeResult } from './safe';
import type { SeenStore } from './seen';

/** Output is coalesced into chunks of at most this many characters (well under the wire limit). */
export const OUTPUT_CHUNK_CHARS = 32 * 1024;
export const OUTPUT_FLUSH_MS = 200;
/** Jobs that may wait behind the running one for one target process; more are refused BUSY. */
export const MAX_WAITING_PER_TARGET = 32;

/** One target process: pid + start time (a reused pid is another process). */
export function targetKey(t: { pid: number; startTime: string }): string {
  return `${t.pid}:${t.startTime}`;
}

export interface JobRunnerDeps {
  config: AgentConfig;
  agentId: string;
  pinnedKey: KeyObject;
  outbox: Outbox;
  seen: SeenStore;
  audit: AuditLog;
  engine: Engine;
  log: Logger;
  userName: (uid: number, pid: number) => string | null;
  readTarget?: (pid: number) => TargetFacts | null;
  now?: () => number;
  procRoot?: string;
  /** Reads inspections (a child process per read in production). Without one, inspections are refused. */
  inspector?: Inspector;
  /** The inventory's latest `remoteDebugEnabled` for a process (null: not known). */
  remoteDebugEnabled?: (pid: number, startTime: string) => boolean | null;
}

type InspectPayloadV2 = Extract<JobPayloadV2, { action: 'inspect' }>;

function refusalAck(code: string, message: string): DispatchAck {
  return { ok: false, error: { code, message } };
}

/** Collects output chunks and appends them to the journal at most every OUTPUT_FLUSH_MS, in bounded pieces. */
class OutputCoalescer {
  private buf = '';
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly emit: (chunk: string) => void) {}

  push(text: string): void {
    this.buf += text;
    if (this.buf.length >= OUTPUT_CHUNK_CHARS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), OUTPUT_FLUSH_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.buf.length > 0) {
      let cut = Math.min(this.buf.length, OUTPUT_CHUNK_CHARS);
      // Do not split a surrogate pair.
      if (cut < this.buf.length && /[\uD800-\uDBFF]/.test(this.buf[cut - 1] ?? '')) cut--;
      this.emit(this.buf.slice(0, cut));
      this.buf = this.buf.slice(cut);
    }
  }
}

interface Running {
  jobId: string;
  action: 'exec' | 'inspect';
  abort: AbortController;
  done: Promise<void>;
}

interface Waiting {
  job: ExecPayloadV2;
  jlog: Logger;
  key: string;
  timer: NodeJS.Timeout | null;
}

/** What occupies one target process: the job running in it, jobs being recovered in it, and the queue. */
interface Lane {
  running: string | null;
  recovering: Set<string>;
  queue: Waiting[];
}

/** Longest setTimeout delay Node accepts. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class JobRunner {
  private readonly running = new Map<string, Running>();
  private readonly waiting = new Map<string, Waiting>();
  private readonly lanes = new Map<string, Lane>();
  private draining = false;
  private readonly now: () => number;
  private readonly readTarget: (pid: number) => TargetFacts | null;

  constructor(private readonly d: JobRunnerDeps) {
    this.now = d.now ?? Date.now;
    this.readTarget = d.readTarget ?? ((pid) => readTargetFacts(pid, d.procRoot));
  }

  get runningCount(): number {
    return this.running.size;
  }

  private countRunning(action: 'exec' | 'inspect'): number {
    let n = 0;
    for (const r of this.running.values()) if (r.action === action) n++;
    return n;
  }

  runningIds(): string[] {
    return [...this.running.keys()];
  }

  /** Jobs accepted and waiting for their target process, in the order they will run. */
  queuedIds(): string[] {
    return [...this.waiting.keys()];
  }

  /** Handle one `job:dispatch`; returns the ack. Never throws. */
  dispatch(raw: unknown): DispatchAck {
    try {
      return this.dispatchUnsafe(raw);
    } catch (e) {
      this.d.log.error({ err: e }, 'dispatch handling failed');
      return refusalAck('INTERNAL', `agent error while accepting the job: ${(e as Error).message}`);
    }
  }

  private dispatchUnsafe(raw: unknown): DispatchAck {
    const { config, log } = this.d;
    const outcome = checkJob(raw, {
      pinnedKey: this.d.pinnedKey,
      agentId: this.d.agentId,
      now: this.now(),
      clockSkewMs: config.clockSkewSeconds * 1000,
      policy: config.policy,
      seen: (id) => this.d.seen.has(id) || this.d.outbox.has(id),
      readTarget: this.readTarget,
      userName: this.d.userName,
      ...(this.d.remoteDebugEnabled ? { remoteDebugEnabled: this.d.remoteDebugEnabled } : {}),
    });

    if (!outcome.ok && !outcome.trusted) {
      // Not ours to record under this id: audit locally, answer in the ack only.
      const p = outcome.payload;
      const jobId = p?.jobId ?? untrustedJobId(raw);
      log.warn({ jobId, code: outcome.code }, 'job refused before it could be trusted');
      this.d.audit.write({
        event: 'refused',
        ...(p ? this.auditFields(p, outcome.version ?? undefined) : {}),
        jobId,
        requestId: p?.requestId ?? null,
        codeHash: p?.action === 'exec' ? p.codeHash : null,
        target: p?.target ?? null,
        outcome: 'refused',
        code: outcome.code,
        message: outcome.message,
        trusted: false,
      });
      return refusalAck(outcome.code, outcome.message);
    }

    const job = outcome.payload!;
    const version = outcome.version!;
    const jlog = log.child({ jobId: job.jobId, requestId: job.requestId });
    this.d.seen.add(job.jobId, job.notAfter);
    this.d.outbox.createJob(this.recordOf(job, version));

    let refusal: { code: JobRefusalCode; message: string } | null = outcome.ok
      ? null
      : { code: outcome.code, message: outcome.message };
    if (!refusal && this.draining)
      refusal = {
        code: 'BUSY',
        message: 'the agent is shutting down and takes no new jobs; dispatch it again when the agent is back',
      };
    if (job.action === 'inspect') return this.acceptInspect(job, version, outcome, refusal, jlog);
    const key = targetKey(job.target);
    const lane = this.lanes.get(key);
    const execs = this.countRunning('exec');
    if (!refusal && !lane && execs >= config.maxConcurrentJobs) {
      refusal = {
        code: 'BUSY',
        message: `the agent already runs ${execs} jobs (maxConcurrentJobs = ${config.maxConcurrentJobs})`,
      };
    }
    if (!refusal && lane && lane.queue.length >= MAX_WAITING_PER_TARGET) {
      refusal = {
        code: 'BUSY',
        message: `${lane.queue.length} jobs already wait for process ${job.target.pid} (at most ${MAX_WAITING_PER_TARGET}); dispatch it again later`,
      };
    }
    if (refusal) {
      this.refuse(job, refusal, jlog);
      return refusalAck(refusal.code, refusal.message);
    }

    this.d.audit.write({
      event: 'received',
      ...this.auditFields(job, version),
      user: outcome.ok ? outcome.user : null,
      uid: outcome.ok ? outcome.target.uids[1] : null,
    });
    jlog.info(
      { pid: job.target.pid, kind: job.kind, scriptId: job.scriptId, v: version, thread: job.options.thread },
      'job accepted',
    );
    if (lane) this.enqueue(job, jlog, key, lane);
    else {
      this.lanes.set(key, { running: null, recovering: new Set(), queue: [] });
      this.launch(job, jlog, key);
    }
    return { ok: true, accepted: true };
  }

  /**
   * An inspection: refused like any job when it must be, else read at once — it does not wait in the target's
   * queue (see the header) — within `inspection.maxConcurrent`.
   */
  private acceptInspect(
    job: InspectPayloadV2,
    version: JobVersion,
    outcome: CheckOutcome,
    refusal: { code: JobRefusalCode; message: string } | null,
    jlog: Logger,
  ): DispatchAck {
    const { config } = this.d;
    const reading = this.countRunning('inspect');
    if (!refusal && !this.d.inspector)
      refusal = { code: 'UNSUPPORTED_OPTION', message: 'this agent process has no inspector configured' };
    if (!refusal && reading >= config.inspection.maxConcurrent)
      refusal = {
        code: 'BUSY',
        message: `the agent already reads ${reading} inspections (inspection.maxConcurrent = ${config.inspection.maxConcurrent}); dispatch it again shortly`,
      };
    // (A failed check always comes with a refusal: see dispatchUnsafe.)
    if (refusal || !outcome.ok) {
      const r = refusal!;
      this.refuse(job, r, jlog);
      return refusalAck(r.code, r.message);
    }
    this.d.audit.write({
      event: 'received',
      ...this.auditFields(job, version),
      user: outcome.user,
      uid: outcome.target.uids[1],
    });
    jlog.info({ pid: job.target.pid, what: job.what }, 'inspection accepted');
    this.d.outbox.markStarted(job.jobId, new Date(this.now()));
    const abort = new AbortController();
    const entry: Running = { jobId: job.jobId, action: 'inspect', abort, done: Promise.resolve() };
    entry.done = this.runInspect(job, outcome.target, abort.signal, jlog).finally(() =>
      this.running.delete(job.jobId),
    );
    this.running.set(job.jobId, entry);
    return { ok: true, accepted: true };
  }

  /** Read in the child, check the target is still the one checked, journal the honest result. */
  private async runInspect(
    job: InspectPayloadV2,
    checked: TargetFacts,
    signal: AbortSignal,
    jlog: Logger,
  ): Promise<void> {
    const { config } = this.d;
    this.d.audit.write({ event: 'started', ...this.auditFields(job) });
    const deadlineMs = config.inspection.deadlineSeconds * 1000;
    let outcome: InspectOutcome;
    try {
      outcome = await this.d.inspector!.inspect(
        {
          pid: job.target.pid,
          startTime: job.target.startTime,
          what: job.what,
          allowOptedOut: config.policy.inspect.allowOptedOut,
          readTimeoutMs: Math.round(config.inspection.readTimeoutSeconds * 1000),
          maxFrames: config.inspection.maxFrames,
          maxReadBytes: config.inspection.maxReadBytes,
          maxReportBytes: REPORT_MAX_BYTES,
          ...(this.d.procRoot ? { procRoot: this.d.procRoot } : {}),
        },
        { deadlineMs, signal },
      );
    } catch (e) {
      outcome = { kind: 'invalid', message: `agent error while inspecting: ${(e as Error).message}` };
    }
    if (outcome.kind === 'opted_out') {
      const refusal = checkOptedOut(job.target.pid, outcome.remoteDebugEnabled, config.policy)!;
      this.refuse(job, refusal, jlog);
      return;
    }
    if (outcome.kind === 'report') {
      // The pid must still be the process that was checked, with the same users: a pid reused or a process that
      // changed its uids (a set-uid exec) while it was read would report someone else's memory.
      const now = this.readTarget(job.target.pid);
      if (!now || now.startTime !== checked.startTime) {
        outcome = {
          kind: 'gone',
          message: `process ${job.target.pid} exited while it was read; what was read is not reported`,
        };
      } else if (now.uids.join('/') !== checked.uids.join('/')) {
        this.finish(
          job.jobId,
          {
            status: 'failed',
            errorCode: 'INSPECT_DISCARDED',
            message: `process ${job.target.pid} changed its user ids while it was read (${checked.uids.join('/')} → ${now.uids.join('/')}); what was read is not reported (the local policy was checked for the old ones). Nothing ran in the target.`,
            output: '',
          },
          jlog,
          'finished',
        );
        return;
      }
    }
    this.finish(
      job.jobId,
      inspectResult(job.what, outcome, config.inspection.deadlineSeconds),
      jlog,
      'finished',
    );
  }

  private refuse(job: JobPayloadV2, refusal: { code: JobRefusalCode; message: string }, jlog: Logger): void {
    this.d.outbox.append(job.jobId, {
      type: 'refused',
      jobId: job.jobId,
      code: refusal.code,
      message: refusal.message,
    });
    this.d.audit.write({
      event: 'refused',
      ...this.auditFields(job),
      outcome: 'refused',
      code: refusal.code,
      message: refusal.message,
      trusted: true,
    });
    jlog.warn({ code: refusal.code, reason: refusal.message }, 'job refused');
  }

  /** Wait behind the job(s) in this target process; say so, bounded by the job's own notAfter. */
  private enqueue(job: ExecPayloadV2, jlog: Logger, key: string, lane: Lane): void {
    const behind = lane.running ?? [...lane.recovering][0]!;
    const ahead = lane.queue.length + 1;
    const w: Waiting = { job, jlog, key, timer: null };
    lane.queue.push(w);
    this.waiting.set(job.jobId, w);
    this.d.outbox.append(job.jobId, { type: 'queued', jobId: job.jobId, behindJobId: behind, ahead });
    this.d.audit.write({ event: 'queued', ...this.auditFields(job), behind, ahead });
    jlog.info({ behind, ahead }, 'job queued behind another job for the same target');
    const left = Date.parse(job.notAfter) - this.now();
    w.timer = setTimeout(() => this.endQueued(w, 'expired'), Math.max(0, Math.min(left, MAX_TIMER_MS)));
    w.timer.unref();
  }

  /** Hand a job to the engine; the target's lane is this job's until it is done, then the next one starts. */
  private launch(job: ExecPayloadV2, jlog: Logger, key: string): void {
    const lane = this.lanes.get(key)!;
    lane.running = job.jobId;
    this.d.outbox.markStarted(job.jobId, new Date(this.now()));
    const abort = new AbortController();
    const entry: Running = { jobId: job.jobId, action: 'exec', abort, done: Promise.resolve() };
    entry.done = this.run(job, abort.signal, jlog).finally(() => {
      this.running.delete(job.jobId);
      if (lane.running === job.jobId) lane.running = null;
      this.advance(key);
    });
    this.running.set(job.jobId, entry);
  }

  /** The target's lane is free: start the next waiting job, or forget the lane. */
  private advance(key: string): void {
    const lane = this.lanes.get(key);
    if (!lane || lane.running !== null || lane.recovering.size > 0) return;
    const w = lane.queue.shift();
    if (!w) {
      this.lanes.delete(key);
      return;
    }
    this.unwait(w);
    if (this.draining) {
      this.endQueued(w, 'interrupted', false);
      return this.advance(key);
    }
    if (this.now() > Date.parse(w.job.notAfter)) {
      this.endQueued(w, 'expired', false);
      return this.advance(key);
    }
    w.jlog.info('the target is free; starting the queued job');
    this.launch(w.job, w.jlog, key);
  }

  private unwait(w: Waiting): void {
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    this.waiting.delete(w.job.jobId);
  }

  /** End a job that never started (it waited in a queue): cancelled, expired or interrupted. Nothing ran. */
  private endQueued(w: Waiting, why: 'cancelled' | 'expired' | 'interrupted', inQueue = true): void {
    if (inQueue) {
      if (!this.waiting.has(w.job.jobId)) return;
      const lane = this.lanes.get(w.key);
      if (lane) lane.queue = lane.queue.filter((x) => x !== w);
      this.unwait(w);
    }
    const { job, jlog } = w;
    const where = `it waited for process ${job.target.pid}, which ran another job, and never started; nothing ran`;
    if (why === 'cancelled') {
      this.finish(
        job.jobId,
        {
          status: 'cancelled',
          errorCode: 'CANCELLED',
          message: `cancelled while queued: ${where}`,
          output: '',
        },
        jlog,
        'finished',
      );
    } else if (why === 'expired') {
      this.refuse(
        job,
        {
          code: 'EXPIRED',
          message: `the job reached its notAfter (${job.notAfter}) while queued: ${where}; submit it again if still needed`,
        },
        jlog,
      );
    } else {
      this.refuse(
        job,
        {
          code: 'INTERRUPTED',
          message: `the agent is shutting down and ${where}; dispatch it again when the agent is back`,
        },
        jlog,
      );
    }
  }

  private recordOf(job: JobPayloadV2, version: JobVersion): JobRecord {
    const common = {
      jobId: job.jobId,
      requestId: job.requestId,
      receivedAt: new Date(this.now()).toISOString(),
      action: job.action,
      v: version,
      contentHash: job.contentHash,
      approvals: job.approvals,
      breakGlass: job.breakGlass,
      notAfter: job.notAfter,
      startedAt: null,
    };
    if (job.action === 'inspect')
      return {
        ...common,
        what: job.what,
        codeHash: null,
        kind: null,
        scriptId: null,
        target: job.target,
        budgetSeconds: this.d.config.inspection.deadlineSeconds,
        pickupTimeoutSeconds: 0,
      };
    const t = job.options.thread;
    return {
      ...common,
      codeHash: job.codeHash,
      paramsHash: createHash('sha256').update(canonicalJson(job.params)).digest('hex'),
      kind: job.kind,
      scriptId: job.scriptId,
      target: { ...job.target, ...(typeof t === 'object' ? { tid: t.tid } : {}) },
      thread: t,
      budgetSeconds: job.options.budgetSeconds,
      pickupTimeoutSeconds: job.options.pickupTimeoutSeconds,
    };
  }

  /**
   * What the local audit records of a job: who asked (request), what (code hash or what is inspected), where,
   * and — from protocol v2 — which approved content (content hash), which approvals (attestation ids) and
   * whether it runs as break-glass. `version` is the envelope version that arrived (where known).
   */
  private auditFields(job: JobPayloadV2, version?: JobVersion) {
    const v2 = {
      contentHash: job.contentHash,
      approvals: job.approvals,
      breakGlass: job.breakGlass,
      ...(version !== undefined ? { v: version } : {}),
    };
    if (job.action === 'inspect')
      return {
        jobId: job.jobId,
        requestId: job.requestId,
        action: 'inspect' as const,
        what: job.what,
        codeHash: null,
        kind: null,
        scriptId: null,
        target: job.target,
        ...v2,
      };
    return {
      jobId: job.jobId,
      requestId: job.requestId,
      action: 'exec' as const,
      codeHash: job.codeHash,
      kind: job.kind,
      scriptId: job.scriptId,
      target: job.target,
      thread: job.options.thread,
      ...v2,
    };
  }

  private async run(job: ExecPayloadV2, signal: AbortSignal, jlog: Logger): Promise<void> {
    const { outbox } = this.d;
    const out = new OutputCoalescer((chunk) =>
      outbox.append(job.jobId, { type: 'output', jobId: job.jobId, chunk }),
    );
    // options.thread → the engine: { tid } → that thread; 'main' → the main thread; 'auto' → any thread of the
    // main interpreter (the engine arms them all, the first at a safe point claims the run). The sys backend can
    // only aim at the main thread: there auto runs on main — one of the threads the approval allowed — and says so.
    const t = job.options.thread;
    const tid = typeof t === 'object' ? t.tid : undefined;
    const narrowed = t === 'auto' && job.options.backend === 'sys';
    const thread: 'auto' | 'main' = t === 'auto' && !narrowed ? 'auto' : 'main';
    this.d.audit.write({
      event: 'started',
      ...this.auditFields(job),
      threadUsed: tid ?? thread,
      ...(job.options.wake ? { wake: true } : {}),
      ...(narrowed
        ? { note: 'thread auto runs on the main thread: the sys backend can only aim at the main thread' }
        : {}),
    });
    let result: ExecResult;
    try {
      result = await this.d.engine.runInTarget({
        pid: job.target.pid,
        expectStartTime: job.target.startTime,
        ...(tid !== undefined ? { tid } : { thread }),
        wake: job.options.wake,
        backend: job.options.backend,
        code: job.code,
        params: job.params,
        pickupTimeoutMs: job.options.pickupTimeoutSeconds * 1000,
        budgetMs: job.options.budgetSeconds * 1000,
        inline: job.options.inline,
        // So that a restarted agent finds this run's staging again (recovery.ts).
        runId: runIdOf(job.jobId),
        onOutput: (chunk) => out.push(chunk),
        onState: (state) => {
          out.flush();
          outbox.append(job.jobId, { type: 'state', jobId: job.jobId, state });
          jlog.info({ state }, 'job state');
        },
        signal,
        ...(this.d.procRoot ? { procRoot: this.d.procRoot } : {}),
      });
    } catch (e) {
      jlog.error({ err: e }, 'engine threw');
      result = {
        status: 'failed',
        errorCode: 'INTERNAL',
        message: `agent error while running the job: ${(e as Error).message}`.slice(0, 4096),
        output: '',
      };
    }
    out.flush();
    if (narrowed && result.status === 'pickup_timeout')
      result = {
        ...result,
        message:
          `${result.message ?? 'the main thread did not pick the job up'} (the job asked for thread auto, which the sys backend runs on the main thread: use the native backend to arm every thread)`.slice(
            0,
            4096,
          ),
      };
    this.finish(job.jobId, result, jlog, 'finished');
  }

  /**
   * Journal and audit the final result. The status is the engine's (a cancelled run is `cancelled`, whatever
   * stopped it); the text is made safe text before it is fitted into one message.
   */
  private finish(
    jobId: string,
    raw: ExecResult | ReportedResult,
    jlog: Logger,
    event: 'finished' | 'recovered',
  ): void {
    const rec = this.d.outbox.record(jobId);
    const result = fitResult(safeResult(raw));
    this.d.outbox.append(jobId, { type: 'result', jobId, result });
    this.d.audit.write({
      event,
      jobId,
      requestId: rec?.requestId ?? null,
      action: rec?.action ?? 'exec',
      ...(rec?.what ? { what: rec.what } : {}),
      codeHash: rec?.codeHash ?? null,
      kind: rec?.kind,
      scriptId: rec?.scriptId ?? null,
      target: rec?.target ?? null,
      ...(rec?.contentHash !== undefined
        ? { contentHash: rec.contentHash, approvals: rec.approvals, breakGlass: rec.breakGlass }
        : {}),
      outcome: result.status,
      code: result.errorCode,
      message: result.message,
    });
    jlog.info({ status: result.status, errorCode: result.errorCode }, 'job finished');
  }

  /**
   * End jobs that a previous agent process left without a final result. Never runs them again. A job that
   * never started (it was queued) is refused INTERRUPTED; for the others the target is inspected, and while
   * that goes on the target counts as busy, so a new job for it waits.
   */
  async recover(records: JobRecord[]): Promise<void> {
    await Promise.all(
      records.map(async (rec) => {
        const jlog = this.d.log.child({ jobId: rec.jobId, requestId: rec.requestId });
        if (rec.action === 'inspect') {
          // Nothing runs in the target during an inspection, so there is nothing to find there: it just ended.
          jlog.warn('inspection was being read when the agent stopped');
          this.finish(
            rec.jobId,
            {
              status: 'failed',
              errorCode: 'INSPECT_INTERRUPTED',
              message:
                'the agent restarted while this inspection was being read; no report was kept. Nothing runs in the target during an inspection; inspect again',
              output: '',
            },
            jlog,
            'recovered',
          );
          return;
        }
        if (rec.startedAt === null) {
          jlog.warn('job was queued when the agent stopped; it never started');
          const message =
            'the agent restarted while this job was queued behind another job for the same process; it never started and a job is never run after a restart, so nothing ran; dispatch it again if still needed';
          this.d.outbox.append(rec.jobId, {
            type: 'refused',
            jobId: rec.jobId,
            code: 'INTERRUPTED',
            message,
          });
          this.d.audit.write({
            event: 'recovered',
            jobId: rec.jobId,
            requestId: rec.requestId,
            codeHash: rec.codeHash,
            kind: rec.kind,
            scriptId: rec.scriptId,
            target: rec.target,
            outcome: 'refused',
            code: 'INTERRUPTED',
            message,
          });
          return;
        }
        jlog.warn('job was in progress when the agent stopped; establishing its outcome');
        const key = targetKey(rec.target);
        let lane = this.lanes.get(key);
        if (!lane) this.lanes.set(key, (lane = { running: null, recovering: new Set(), queue: [] }));
        lane.recovering.add(rec.jobId);
        let result: ExecResult;
        try {
          result = await recoverJob(rec, this.d.procRoot ? { procRoot: this.d.procRoot } : {});
        } catch (e) {
          result = {
            status: 'failed',
            errorCode: 'HARNESS_ERROR',
            message: `the agent restarted while this job was in progress; outcome unknown (${(e as Error).message}). The job was not run again.`,
            output: '',
          };
        } finally {
          lane.recovering.delete(rec.jobId);
        }
        this.finish(rec.jobId, result, jlog, 'recovered');
        this.advance(key);
      }),
    );
  }

  /**
   * `job:cancel`: a running job's engine call is aborted (the engine stops the code and reports `cancelled`);
   * a queued one ends `cancelled` without running. False when the agent has no such job in hand.
   */
  cancel(jobId: string): boolean {
    const r = this.running.get(jobId);
    if (r) {
      if (!r.abort.signal.aborted) {
        this.d.audit.write({ event: 'cancel_requested', jobId, outcome: 'running' });
        r.abort.abort();
      }
      return true;
    }
    const w = this.waiting.get(jobId);
    if (w) {
      this.d.audit.write({ event: 'cancel_requested', jobId, outcome: 'queued' });
      this.endQueued(w, 'cancelled');
      return true;
    }
    return false;
  }

  /**
   * Shutdown: take no new jobs, let the ones in hand finish within `graceMs`, then cancel them and give the
   * engine `cancelMs` to report. A job still unfinished after that stays in the journal and is ended honestly
   * by the next start (recover()).
   */
  async drain(graceMs: number, cancelMs = 5000): Promise<string[]> {
    this.draining = true;
    // Queued jobs never started: end them now (nothing ran) instead of starting them at shutdown.
    for (const w of [...this.waiting.values()]) this.endQueued(w, 'interrupted');
    const all = (): Promise<unknown> => Promise.all([...this.running.values()].map((r) => r.done));
    const timeout = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
    if (this.running.size === 0) return [];
    await Promise.race([all(), timeout(graceMs)]);
    if (this.running.size > 0) {
      this.d.log.warn({ jobs: this.runningIds() }, 'cancelling jobs still running at shutdown');
      for (const r of this.running.values()) {
        this.d.audit.write({ event: 'cancel_requested', jobId: r.jobId, outcome: 'shutdown' });
        r.abort.abort();
      }
      await Promise.race([all(), timeout(cancelMs)]);
    }
    return this.runningIds();
  }
}
