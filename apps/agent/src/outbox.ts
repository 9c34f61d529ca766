/**
 * The durable outbox. Every job event is appended (fsync'd) to its job's journal before anyone may send it and
 * is delivered until the control plane acknowledges it; acknowledgements are journalled too. So after a
 * disconnect, a control-plane restart or an agent crash, exactly the unacknowledged events are sent again, in
 * order, with their original sequence numbers (the server applies each jobId+seq once).
 *
 * Layout, one directory per job under <stateDir>/jobs/<jobId>/:
 *   job.json      what was received (written before the job is accepted)
 *   events.jsonl  the job's events; line n holds seq n
 *   acks.jsonl    what became of each sent event: acknowledged, or refused for good (with the control plane's
 *                 code and reason and the substitute sent in its place — see `reject`)
 *
 * Delivery is per job: a job's events go strictly in seq order, but a job whose next event the control plane
 * defers (a retryable answer) waits on its own, so it never holds up the events of other jobs. A report the
 * control plane refuses for good is never sent again: its seq is taken by a REPORT_REFUSED result (the
 * substitute), so the execution still ends honestly, and the job's later events stay in the local journal.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { JobEvent } from '@pyreach/protocol/agent';
import { Id } from '@pyreach/protocol/common';
import { AppendLog, ensureDir, parseJsonLines, writeFileDurable } from './durable';
import { safeEvent, safeStr } from './safe';

/** What the agent keeps about a job it accepted or refused (never the envelope's signature). */
export interface JobRecord {
  jobId: string;
  requestId: string;
  receivedAt: string;
  /** Run code (`exec`) or read memory (`inspect`). Absent in journals of agents before protocol v2: exec. */
  action?: 'exec' | 'inspect';
  /** What an inspection reads. */
  what?: 'stacks' | 'tasks';
  /** The envelope version that arrived (absent: an agent before protocol v2, so 1). */
  v?: 1 | 2;
  /** v2: the request's content hash the approvals are for, the attestation ids, break-glass. */
  contentHash?: string;
  approvals?: string[];
  breakGlass?: boolean;
  /** null for an inspection (it carries no code). */
  codeHash: string | null;
  /** SHA-256 of the canonical JSON of params (to recognise this job's staging directory after a crash). */
  paramsHash?: string;
  kind: 'library' | 'custom' | null;
  scriptId: string | null;
  target: { pid: number; startTime: string; tid?: number };
  /** v2 exec: the thread the job asked for (`auto`, `main`, `{ tid }`). */
  thread?: 'auto' | 'main' | { tid: number };
  notAfter: string;
  /** exec: the code's time budget; inspect: the reading child's deadline. */
  budgetSeconds: number;
  /** exec: the pickup timeout; inspect: 0 (nothing is picked up). */
  pickupTimeoutSeconds: number;
  /**
   * When the agent handed the job to the engine. `null`: accepted but not started yet (queued behind another
   * job for the same target), so after a restart it is known that nothing ran. Absent in journals of older
   * agents, which started every job at once.
   */
  startedAt?: string | null;
}

export interface Rejection {
  code: string;
  message: string;
}

type NewEvent = JobEvent extends infer E
  ? E extends JobEvent
    ? Omit<E, 'seq' | 'at'> & { at?: string }
    : never
  : never;

interface AckLine {
  seq: number;
  /** The control plane refused event `seq` for good. (Older agents wrote this alone and went on delivering.) */
  rejected?: Rejection;
  /** Sent in place of the refused event, under the same seq; the job's later events are withheld. */
  substitute?: JobEvent;
  /** What became of the substitute for `seq`. */
  substituteAcked?: true;
  substituteRejected?: Rejection;
}

interface Cut {
  seq: number;
  substitute: JobEvent;
  done: boolean;
}

interface JobState {
  record: JobRecord | null;
  events: JobEvent[];
  acked: Set<number>;
  eventsLog: AppendLog | null;
  acksLog: AppendLog | null;
  final: boolean;
  /** Set once a report of this job was refused for good: from its seq on, only the substitute is sent. */
  cut: Cut | null;
  /** Not before this time (ms): the control plane deferred this job's next event. Memory only. */
  retryAt: number;
}

function newState(record: JobRecord | null): JobState {
  return {
    record,
    events: [],
    acked: new Set(),
    eventsLog: null,
    acksLog: null,
    final: false,
    cut: null,
    retryAt: 0,
  };
}

/** The next event of one job to deliver (in seq order), or null. */
function nextOf(s: JobState): JobEvent | null {
  if (s.cut) return s.cut.done ? null : s.cut.substitute;
  for (const e of s.events) if (!s.acked.has(e.seq)) return e;
  return null;
}

function pendingOf(s: JobState): JobEvent[] {
  if (s.cut) return s.cut.done ? [] : [s.cut.substitute];
  return s.events.filter((e) => !s.acked.has(e.seq));
}

const REPORT_NAMES: Record<JobEvent['type'], string> = {
  state: 'state',
  queued: 'queued',
  output: 'output',
  result: 'result',
  refused: 'refusal',
};

/**
 * The result sent in place of a report the control plane refused for good: the execution ends `failed`
 * with REPORT_REFUSED and the control plane's reason, and says where the rest of the job's record is.
 */
export function reportRefusedEvent(
  ev: JobEvent,
  rejection: Rejection,
  journalDir: string,
  at = new Date(),
): JobEvent {
  const original = ev.type === 'result' ? ` (the job itself ended ${ev.result.status})` : '';
  const message =
    `the control plane refused this job's ${REPORT_NAMES[ev.type]} report #${ev.seq}${original} for good ` +
    `(${rejection.code}: ${rejection.message}). The agent stopped reporting this job; that report and every later ` +
    `one are kept on the agent's host in ${journalDir} and its audit log`;
  return {
    type: 'result',
    jobId: ev.jobId,
    seq: ev.seq,
    at: at.toISOString(),
    result: {
      status: 'failed',
      errorCode: 'REPORT_REFUSED',
      message: safeStr(message, 4096),
      output: '',
      refusedReport: {
        seq: ev.seq,
        type: ev.type,
        code: safeStr(rejection.code, 64),
        message: safeStr(rejection.message, 4096),
      },
    },
  };
}

export interface PendingItem {
  event: JobEvent;
}

export class Outbox {
  private readonly jobs = new Map<string, JobState>();
  private readonly waiters = new Set<() => void>();
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'jobs');
  }

  /** Load every journal from disk. Returns the jobs that were received but have no final event (crash recovery). */
  open(): JobRecord[] {
    ensureDir(this.dir);
    const dirs = readdirSync(this.dir).filter((d) => Id.safeParse(d).success);
    const loaded: { id: string; state: JobState; order: string }[] = [];
    for (const id of dirs) {
      const d = join(this.dir, id);
      let record: JobRecord | null = null;
      try {
        record = JSON.parse(readFileSync(join(d, 'job.json'), 'utf8')) as JobRecord;
      } catch {
        record = null;
      }
      const events = existsSync(join(d, 'events.jsonl'))
        ? parseJsonLines<JobEvent>(readFileSync(join(d, 'events.jsonl'), 'utf8')).items
        : [];
      // Keep the contiguous prefix only: seq n is line n. A journal of an older agent may hold text that is
      // not safe text yet: it is sent encoded (the journal itself stays as it was written).
      const ordered: JobEvent[] = [];
      for (const e of events) {
        if (e.seq === ordered.length + 1) ordered.push(safeEvent(e));
      }
      const state = newState(record);
      state.events = ordered;
      state.final = ordered.some((e) => e.type === 'result' || e.type === 'refused');
      if (existsSync(join(d, 'acks.jsonl'))) {
        for (const a of parseJsonLines<AckLine>(readFileSync(join(d, 'acks.jsonl'), 'utf8')).items) {
          if (a.substitute) {
            state.acked.add(a.seq);
            state.cut = { seq: a.seq, substitute: safeEvent(a.substitute), done: false };
          } else if (a.substituteAcked || a.substituteRejected) {
            if (state.cut?.seq === a.seq) state.cut.done = true;
          } else state.acked.add(a.seq);
        }
      }
      loaded.push({
        id,
        state,
        order: record?.receivedAt ?? ordered[0]?.at ?? statSync(d).mtime.toISOString(),
      });
    }
    loaded.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
    for (const l of loaded) this.jobs.set(l.id, l.state);
    return loaded.filter((l) => l.state.record && !l.state.final).map((l) => l.state.record!);
  }

  has(jobId: string): boolean {
    return this.jobs.has(jobId);
  }

  record(jobId: string): JobRecord | null {
    return this.jobs.get(jobId)?.record ?? null;
  }

  isFinal(jobId: string): boolean {
    return this.jobs.get(jobId)?.final ?? false;
  }

  /** Record a received job durably (before it is accepted). */
  createJob(record: JobRecord): void {
    const d = join(this.dir, record.jobId);
    ensureDir(d);
    writeFileDurable(join(d, 'job.json'), JSON.stringify(record));
    const existing = this.jobs.get(record.jobId);
    if (existing) existing.record = record;
    else this.jobs.set(record.jobId, newState(record));
  }

  /** Durably note that the job is being handed to the engine (before any of it can reach the target). */
  markStarted(jobId: string, at = new Date()): void {
    const s = this.jobs.get(jobId);
    if (!s?.record) return;
    s.record = { ...s.record, startedAt: at.toISOString() };
    writeFileDurable(join(this.dir, jobId, 'job.json'), JSON.stringify(s.record));
  }

  /** Directory of a job's journal (named in messages, so an operator knows where the local record is). */
  journalDir(jobId: string): string {
    return join(this.dir, jobId);
  }

  private state(jobId: string): JobState {
    let s = this.jobs.get(jobId);
    if (!s) {
      ensureDir(join(this.dir, jobId));
      s = newState(null);
      this.jobs.set(jobId, s);
    }
    return s;
  }

  /**
   * Append an event (assigning its seq); on disk when this returns. Its text is made safe text first. After a
   * report of this job was refused for good (see `reject`) events are still journalled but never sent.
   */
  append(jobId: string, ev: NewEvent): JobEvent {
    const s = this.state(jobId);
    if (s.final) throw new Error(`job ${jobId} already has its final event`);
    const event = safeEvent({
      ...ev,
      jobId,
      seq: s.events.length + 1,
      at: ev.at ?? new Date().toISOString(),
    } as JobEvent);
    s.eventsLog ??= new AppendLog(join(this.dir, jobId, 'events.jsonl'));
    s.eventsLog.append(event);
    s.events.push(event);
    if (event.type === 'result' || event.type === 'refused') s.final = true;
    for (const w of [...this.waiters]) w();
    return event;
  }

  private writeAck(jobId: string, s: JobState, line: AckLine): void {
    s.acksLog ??= new AppendLog(join(this.dir, jobId, 'acks.jsonl'));
    s.acksLog.append(line);
  }

  private settled(s: JobState): void {
    s.retryAt = 0;
    if (s.final && nextOf(s) === null) {
      s.eventsLog?.close();
      s.acksLog?.close();
      s.eventsLog = null;
      s.acksLog = null;
    }
    for (const w of [...this.waiters]) w();
  }

  /** The control plane acknowledged the job's pending event `seq` (the substitute, after a cut). */
  ack(jobId: string, seq: number): void {
    const s = this.jobs.get(jobId);
    if (!s) return;
    if (s.cut) {
      if (s.cut.seq !== seq || s.cut.done) return;
      this.writeAck(jobId, s, { seq, substituteAcked: true });
      s.cut.done = true;
    } else {
      if (s.acked.has(seq)) return;
      this.writeAck(jobId, s, { seq });
      s.acked.add(seq);
    }
    this.settled(s);
  }

  /**
   * The control plane refused the job's pending event `seq` for good. It is never sent again. Unless it was
   * already the substitute, a REPORT_REFUSED result takes its seq (so the execution ends honestly) and the
   * job's later events are withheld. Returns the substitute, or null when none will be sent.
   */
  reject(jobId: string, seq: number, rejection: Rejection): JobEvent | null {
    const s = this.jobs.get(jobId);
    if (!s) return null;
    if (s.cut) {
      if (s.cut.seq !== seq || s.cut.done) return null;
      this.writeAck(jobId, s, { seq, substituteRejected: rejection });
      s.cut.done = true;
      this.settled(s);
      return null;
    }
    const ev = s.events[seq - 1];
    if (!ev || s.acked.has(seq)) return null;
    const substitute = reportRefusedEvent(ev, rejection, this.journalDir(jobId));
    this.writeAck(jobId, s, { seq, rejected: rejection, substitute });
    s.acked.add(seq);
    s.cut = { seq, substitute, done: false };
    this.settled(s);
    return substitute;
  }

  /** True once a report of this job was refused for good (its later events stay local). */
  isCut(jobId: string): boolean {
    return this.jobs.get(jobId)?.cut != null;
  }

  /** The control plane asked to send this job's next event again later: hold the job (only it) until then. */
  defer(jobId: string, ms: number, now = Date.now()): void {
    const s = this.jobs.get(jobId);
    if (s) s.retryAt = now + ms;
  }

  clearDeferrals(): void {
    for (const s of this.jobs.values()) s.retryAt = 0;
  }

  /** Events still to deliver: jobs in the order they were received, each job's events by seq. */
  pending(): JobEvent[] {
    const out: JobEvent[] = [];
    for (const s of this.jobs.values()) out.push(...pendingOf(s));
    return out;
  }

  /** The next event to send: the first job (in order received) that has one and is not held back. */
  nextPending(now = Date.now()): JobEvent | null {
    for (const s of this.jobs.values()) {
      if (s.retryAt > now) continue;
      const e = nextOf(s);
      if (e) return e;
    }
    return null;
  }

  /** When the earliest held-back job may be tried again (ms since epoch), or null. */
  nextRetryAt(): number | null {
    let t: number | null = null;
    for (const s of this.jobs.values())
      if (s.retryAt > 0 && nextOf(s) && (t === null || s.retryAt < t)) t = s.retryAt;
    return t;
  }

  depth(): number {
    let n = 0;
    for (const s of this.jobs.values()) n += pendingOf(s).length;
    return n;
  }

  /** Age in whole seconds of the oldest event still to deliver, or null when there is none. */
  oldestAgeSeconds(now = Date.now()): number | null {
    let oldest: number | null = null;
    for (const s of this.jobs.values()) {
      const e = nextOf(s);
      if (!e) continue;
      const t = Date.parse(e.at);
      if (Number.isFinite(t) && (oldest === null || t < oldest)) oldest = t;
    }
    return oldest === null ? null : Math.max(0, Math.floor((now - oldest) / 1000));
  }

  /** Resolves at the next append or ack, or after `timeoutMs` (the waiter is removed either way). */
  changed(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const w = (): void => {
        this.waiters.delete(w);
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(w, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Pending waiters (for tests: idle loops must not accumulate them). */
  get waiterCount(): number {
    return this.waiters.size;
  }

  /** Wait until nothing is pending or the deadline passes. */
  async drained(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.depth() > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.changed(Math.min(left, 250));
    }
    return true;
  }

  /**
   * Forget journals of jobs that are final, fully acknowledged and whose notAfter is older than `keepMs`.
   * The replay guard lives elsewhere (seen.jsonl), so forgetting a journal never lets a job run again.
   */
  prune(keepMs: number, now = Date.now()): number {
    let n = 0;
    for (const [id, s] of this.jobs) {
      if (!s.final || nextOf(s) !== null) continue;
      const notAfter = s.record ? Date.parse(s.record.notAfter) : 0;
      if (now - notAfter < keepMs) continue;
      s.eventsLog?.close();
      s.acksLog?.close();
      rmSync(join(this.dir, id), { recursive: true, force: true });
      this.jobs.delete(id);
      n++;
    }
    return n;
  }

  close(): void {
    for (const s of this.jobs.values()) {
      s.eventsLog?.close();
      s.acksLog?.close();
      s.eventsLog = null;
      s.acksLog = null;
    }
  }
}
