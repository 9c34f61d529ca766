/**
 * The replay guard: every job id that passed signature checks is appended here, fsync'd, before the job is
 * accepted or refused, so a job id runs at most once, across restarts too. Entries are compacted away once
 * the job's notAfter is far enough in the past that the expiry check alone refuses it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppendLog, parseJsonLines, writeFileDurable } from './durable';

interface SeenLine {
  jobId: string;
  at: string;
  notAfter: string;
}

export class SeenStore {
  private readonly ids = new Map<string, SeenLine>();
  private log: AppendLog | null = null;
  readonly path: string;

  constructor(
    stateDir: string,
    /** Must exceed the clock-skew allowance: an entry is dropped only when expiry refuses the job anyway. */
    private readonly retainAfterExpiryMs = 7 * 24 * 3600 * 1000,
  ) {
    this.path = join(stateDir, 'seen.jsonl');
  }

  open(now = Date.now()): void {
    if (existsSync(this.path)) {
      const { items } = parseJsonLines<SeenLine>(readFileSync(this.path, 'utf8'));
      let dropped = 0;
      for (const l of items) {
        const exp = Date.parse(l.notAfter);
        if (Number.isFinite(exp) && now - exp > this.retainAfterExpiryMs) dropped++;
        else this.ids.set(l.jobId, l);
      }
      if (dropped > 0) {
        writeFileDurable(this.path, [...this.ids.values()].map((l) => JSON.stringify(l) + '\n').join(''));
      }
    }
    this.log = new AppendLog(this.path);
  }

  has(jobId: string): boolean {
    return this.ids.has(jobId);
  }

  /** On disk when this returns. */
  add(jobId: string, notAfter: string): void {
    if (!this.log) throw new Error('SeenStore not open');
    const line = { jobId, at: new Date().toISOString(), notAfter };
    this.log.append(line);
    this.ids.set(jobId, line);
  }

  get size(): number {
    return this.ids.size;
  }

  close(): void {
    this.log?.close();
  }
}
