/**
 * The durable outbox. Every job event is appended (fsync'd) to its job's journal before anyone may send it and
 * is delivered until the control plane acknowledges it; acknowledgements are journalled too. So after a
 * disconnect, a control-plane restart or an agent crash, exactly the unacknowledged events are sent again, in
 * order, with their original sequence numbers (the server applies each jobId+seq once).
 *
 * Layout, one directory per job under <stateDir>/jobs/<jobId>/:
 *   job.json      what was received (written before the job is accepted)
 *   events.jsonl  the job's events; line n holds seq n
 *   acks.jsonl    seqs the control plane acknowledged (or rejected, with its reason)
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { JobEvent } from '@pyreach/protocol/agent';
import { Id } from '@pyreach/protocol/common';
import { AppendLog, ensureDir, parseJsonLines, writeFileDurable } from './durable';

/** What the agent keeps about a job it accepted or refused (never the envelope's signature). */
export interface JobRecord {
  jobId: string;
  requestId: string;
  receivedAt: string;
  codeHash: string;
  /** SHA-256 of the canonical JSON of params (to recognise this job's staging directory after a crash). */
  paramsHash?: string;
  kind: 'library' | 'custom';
  scriptId: string | null;
  target: { pid: number; startTime: string; tid?: number };
  notAfter: string;
  budgetSeconds: number;
  pickupTimeoutSeconds: number;
}

type NewEvent = JobEvent extends infer E
  ? E extends JobEvent
    ? Omit<E, 'seq' | 'at'> & { at?: string }
    : never
  : never;

interface AckLine {
  seq: number;
  rejected?: { code: string; message: string };
}

interface JobState {
  record: JobRecord | null;
  events: JobEvent[];
  acked: Set<number>;
  eventsLog: AppendLog | null;
  acksLog: AppendLog | null;
  final: boolean;
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
      // Keep the contiguous prefix only: seq n is line n.
      const ordered: JobEvent[] = [];
      for (const e of events) {
        if (e.seq === ordered.length + 1) ordered.push(e);
      }
      const acked = new Set<number>();
      if (existsSync(join(d, 'acks.jsonl'))) {
        for (const a of parseJsonLines<AckLine>(readFileSync(join(d, 'acks.jsonl'), 'utf8')).items)
          acked.add(a.seq);
      }
      const state: JobState = {
        record,
        events: ordered,
        acked,
        eventsLog: null,
        acksLog: null,
        final: ordered.some((e) => e.type === 'result' || e.type === 'refused'),
      };
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
    else
      this.jobs.set(record.jobId, {
        record,
        events: [],
        acked: new Set(),
        eventsLog: null,
        acksLog: null,
        final: false,
      });
  }

  private state(jobId: string): JobState {
    let s = this.jobs.get(jobId);
    if (!s) {
      ensureDir(join(this.dir, jobId));
      s = { record: null, events: [], acked: new Set(), eventsLog: null, acksLog: null, final: false };
      this.jobs.set(jobId, s);
    }
    return s;
  }

  /** Append an event (assigning its seq); on disk when this returns. */
  append(jobId: string, ev: NewEvent): JobEvent {
    const s = this.state(jobId);
    if (s.final) throw new Error(`job ${jobId} already has its final event`);
    const event = {
      ...ev,
      jobId,
      seq: s.events.length + 1,
      at: ev.at ?? new Date().toISOString(),
    } as JobEvent;
    s.eventsLog ??= new AppendLog(join(this.dir, jobId, 'events.jsonl'));
    s.eventsLog.append(event);
    s.events.push(event);
    if (event.type === 'result' || event.type === 'refused') s.final = true;
    for (const w of [...this.waiters]) w();
    return event;
  }

  /** The control plane acknowledged (or definitively rejected) an event. */
  ack(jobId: string, seq: number, rejected?: { code: string; message: string }): void {
    const s = this.jobs.get(jobId);
    if (!s || s.acked.has(seq)) return;
    s.acksLog ??= new AppendLog(join(this.dir, jobId, 'acks.jsonl'));
    s.acksLog.append(rejected ? { seq, rejected } : { seq });
    s.acked.add(seq);
    if (s.final && s.acked.size >= s.events.length) {
      s.eventsLog?.close();
      s.acksLog?.close();
      s.eventsLog = null;
      s.acksLog = null;
    }
    for (const w of [...this.waiters]) w();
  }

  /** Unacknowledged events: jobs in the order they were received, each job's events by seq. */
  pending(): JobEvent[] {
    const out: JobEvent[] = [];
    for (const s of this.jobs.values()) for (const e of s.events) if (!s.acked.has(e.seq)) out.push(e);
    return out;
  }

  nextPending(): JobEvent | null {
    for (const s of this.jobs.values()) for (const e of s.events) if (!s.acked.has(e.seq)) return e;
    return null;
  }

  depth(): number {
    let n = 0;
    for (const s of this.jobs.values()) n += s.events.length - s.acked.size;
    return n;
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
      if (!s.final || s.acked.size < s.events.length) continue;
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
