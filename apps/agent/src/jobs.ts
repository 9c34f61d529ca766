/**
 * From `job:dispatch` to the final `result`: checks, durable bookkeeping in a fixed order, the run through the
 * engine, output streaming, and the honest ending of jobs a previous agent process left unfinished.
 *
 * Order for a trusted job id (signature verified, addressed to us, never seen):
 *   1. seen.jsonl  (fsync)  — from here on this id can never run again, even after a crash
 *   2. jobs/<id>/job.json   — the journal exists, so a crash mid-run is recovered honestly
 *   3. refusal → `refused` event in the journal, audit, failed ack; otherwise audit + accepted ack, then run.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { DispatchAck, JobRefusalCode } from '@pyreach/protocol/agent';
import type { ExecResult } from '@pyreach/protocol/exec';
import type { JobPayload } from '@pyreach/protocol/job';
import type { AuditLog } from './audit';
import { checkJob, untrustedJobId } from './checks';
import type { AgentConfig } from './config';
import type { Engine } from './engine';
import type { JobRecord, Outbox } from './outbox';
import { readTargetFacts, type TargetFacts } from './procinfo';
import { fitResult } from './fit';
import { recoverJob } from './recovery';
import type { SeenStore } from './seen';

/** Output is coalesced into chunks of at most this many characters (well under the wire limit). */
export const OUTPUT_CHUNK_CHARS = 32 * 1024;
export const OUTPUT_FLUSH_MS = 200;

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
}

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
  abort: AbortController;
  done: Promise<void>;
}

export class JobRunner {
  private readonly running = new Map<string, Running>();
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

  runningIds(): string[] {
    return [...this.running.keys()];
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
    });

    if (!outcome.ok && !outcome.trusted) {
      // Not ours to record under this id: audit locally, answer in the ack only.
      const p = outcome.payload;
      const jobId = p?.jobId ?? untrustedJobId(raw);
      log.warn({ jobId, code: outcome.code }, 'job refused before it could be trusted');
      this.d.audit.write({
        event: 'refused',
        jobId,
        requestId: p?.requestId ?? null,
        codeHash: p?.codeHash ?? null,
        target: p?.target ?? null,
        outcome: 'refused',
        code: outcome.code,
        message: outcome.message,
        trusted: false,
      });
      return refusalAck(outcome.code, outcome.message);
    }

    const job = outcome.payload!;
    const jlog = log.child({ jobId: job.jobId, requestId: job.requestId });
    this.d.seen.add(job.jobId, job.notAfter);
    this.d.outbox.createJob(this.recordOf(job));

    let refusal: { code: JobRefusalCode; message: string } | null = outcome.ok
      ? null
      : { code: outcome.code, message: outcome.message };
    if (!refusal && this.draining)
      refusal = {
        code: 'BUSY',
        message: 'the agent is shutting down and takes no new jobs; dispatch it again when the agent is back',
      };
    if (!refusal && this.running.size >= config.maxConcurrentJobs) {
      refusal = {
        code: 'BUSY',
        message: `the agent already runs ${this.running.size} jobs (maxConcurrentJobs = ${config.maxConcurrentJobs})`,
      };
    }
    if (refusal) {
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
      return refusalAck(refusal.code, refusal.message);
    }

    this.d.audit.write({
      event: 'received',
      ...this.auditFields(job),
      user: outcome.ok ? outcome.user : null,
      uid: outcome.ok ? outcome.target.uids[1] : null,
    });
    jlog.info({ pid: job.target.pid, kind: job.kind, scriptId: job.scriptId }, 'job accepted');
    const abort = new AbortController();
    const entry: Running = { jobId: job.jobId, abort, done: Promise.resolve() };
    entry.done = this.run(job, abort.signal, jlog).finally(() => this.running.delete(job.jobId));
    this.running.set(job.jobId, entry);
    return { ok: true, accepted: true };
  }

  private recordOf(job: JobPayload): JobRecord {
    return {
      jobId: job.jobId,
      requestId: job.requestId,
      receivedAt: new Date(this.now()).toISOString(),
      codeHash: job.codeHash,
      paramsHash: createHash('sha256').update(canonicalJson(job.params)).digest('hex'),
      kind: job.kind,
      scriptId: job.scriptId,
      target: job.target,
      notAfter: job.notAfter,
      budgetSeconds: job.options.budgetSeconds,
      pickupTimeoutSeconds: job.options.pickupTimeoutSeconds,
    };
  }

  private auditFields(
    job: Pick<JobPayload, 'jobId' | 'requestId' | 'codeHash' | 'kind' | 'scriptId' | 'target'>,
  ) {
    return {
      jobId: job.jobId,
      requestId: job.requestId,
      codeHash: job.codeHash,
      kind: job.kind,
      scriptId: job.scriptId,
      target: job.target,
    };
  }

  private async run(job: JobPayload, signal: AbortSignal, jlog: Logger): Promise<void> {
    const { outbox } = this.d;
    const out = new OutputCoalescer((chunk) =>
      outbox.append(job.jobId, { type: 'output', jobId: job.jobId, chunk }),
    );
    this.d.audit.write({ event: 'started', ...this.auditFields(job) });
    let result: ExecResult;
    try {
      result = await this.d.engine.runInTarget({
        pid: job.target.pid,
        expectStartTime: job.target.startTime,
        ...(job.target.tid !== undefined ? { tid: job.target.tid } : {}),
        backend: job.options.backend,
        code: job.code,
        params: job.params,
        pickupTimeoutMs: job.options.pickupTimeoutSeconds * 1000,
        budgetMs: job.options.budgetSeconds * 1000,
        inline: job.options.inline,
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
    this.finish(job.jobId, result, jlog, 'finished');
  }

  private finish(jobId: string, result: ExecResult, jlog: Logger, event: 'finished' | 'recovered'): void {
    const rec = this.d.outbox.record(jobId);
    result = fitResult(result);
    this.d.outbox.append(jobId, { type: 'result', jobId, result });
    this.d.audit.write({
      event,
      jobId,
      requestId: rec?.requestId ?? null,
      codeHash: rec?.codeHash ?? null,
      kind: rec?.kind,
      scriptId: rec?.scriptId ?? null,
      target: rec?.target ?? null,
      outcome: result.status,
      code: result.errorCode,
      message: result.message,
    });
    jlog.info({ status: result.status, errorCode: result.errorCode }, 'job finished');
  }

  /** End jobs that a previous agent process left without a final result. Never runs them again. */
  async recover(records: JobRecord[]): Promise<void> {
    await Promise.all(
      records.map(async (rec) => {
        const jlog = this.d.log.child({ jobId: rec.jobId, requestId: rec.requestId });
        jlog.warn('job was in progress when the agent stopped; establishing its outcome');
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
        }
        this.finish(rec.jobId, result, jlog, 'recovered');
      }),
    );
  }

  cancel(jobId: string): boolean {
    const r = this.running.get(jobId);
    if (!r) return false;
    r.abort.abort();
    return true;
  }

  /**
   * Shutdown: take no new jobs, let the ones in hand finish within `graceMs`, then cancel them and give the
   * engine `cancelMs` to report. A job still unfinished after that stays in the journal and is ended honestly
   * by the next start (recover()).
   */
  async drain(graceMs: number, cancelMs = 5000): Promise<string[]> {
    this.draining = true;
    const all = (): Promise<unknown> => Promise.all([...this.running.values()].map((r) => r.done));
    const timeout = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
    if (this.running.size === 0) return [];
    await Promise.race([all(), timeout(graceMs)]);
    if (this.running.size > 0) {
      this.d.log.warn({ jobs: this.runningIds() }, 'cancelling jobs still running at shutdown');
      for (const r of this.running.values()) r.abort.abort();
      await Promise.race([all(), timeout(cancelMs)]);
    }
    return this.runningIds();
  }
}
