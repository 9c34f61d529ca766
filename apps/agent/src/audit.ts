/**
 * The local audit log: append-only JSON Lines in the state directory, fsync'd per entry. Evidence of every
 * job received, refused, started and finished on this host that survives even if the control plane does not.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { AppendLog, parseJsonLines } from './durable';

export type AuditKind =
  | 'received'
  | 'queued'
  | 'refused'
  | 'started'
  | 'finished'
  | 'recovered'
  | 'cancel_requested'
  | 'delivery_rejected'
  | 'enrolled'
  | 'revoked';

export interface AuditEntry {
  at: string;
  event: AuditKind;
  jobId?: string | null;
  requestId?: string | null;
  codeHash?: string | null;
  kind?: 'library' | 'custom' | null;
  /** exec or inspect (absent in entries of agents before protocol v2: exec). */
  action?: 'exec' | 'inspect';
  scriptId?: string | null;
  target?: { pid: number; startTime: string; tid?: number } | null;
  /** refusal code, engine status or delivery failure */
  outcome?: string;
  code?: string;
  message?: string;
  [k: string]: unknown;
}

export const AUDIT_FILE = 'audit.jsonl';

export class AuditLog {
  private readonly log: AppendLog;

  constructor(
    stateDir: string,
    /** [health] Told every entry after it is written (job metrics, apps/agent/src/health.ts). */
    private readonly observe?: (entry: AuditEntry) => void,
  ) {
    this.log = new AppendLog(join(stateDir, AUDIT_FILE));
  }

  write(entry: Omit<AuditEntry, 'at'>): void {
    const full = { at: new Date().toISOString(), ...entry } as AuditEntry;
    this.log.append(full);
    this.observe?.(full);
  }

  close(): void {
    this.log.close();
  }
}

/** The last `n` entries (reads only the file's tail). */
export function readAuditTail(stateDir: string, n: number): AuditEntry[] {
  const path = join(stateDir, AUDIT_FILE);
  if (!existsSync(path)) return [];
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    let text = buf.toString('utf8');
    if (len < size) text = text.slice(text.indexOf('\n') + 1);
    return parseJsonLines<AuditEntry>(text).items.slice(-n);
  } finally {
    closeSync(fd);
  }
}
