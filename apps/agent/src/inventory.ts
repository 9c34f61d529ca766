/**
 * Which Python processes run here. A full discovery through the engine on start and every scanIntervalSeconds;
 * between them a cheap look at the pid list (one readdir of /proc) so a new or vanished Python process is
 * reported within seconds while unchanged processes cost nothing.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { arch, hostname, release } from 'node:os';
import type {
  HostFacts,
  InventoryDelta,
  InventorySnapshot,
  PythonProcess,
} from '@pyreach/protocol/inventory';
import type { Engine } from './engine';

const key = (p: { pid: number; startTime: string }): string => `${p.pid}:${p.startTime}`;

export function listPids(procRoot = '/proc'): number[] {
  const out: number[] = [];
  for (const n of readdirSync(procRoot)) if (/^\d+$/.test(n)) out.push(Number(n));
  return out;
}

export function hostFacts(agentVersion: string, labels: Record<string, string>): HostFacts {
  let os = 'Linux';
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m?.[1]) os = m[1];
  } catch {
    /* keep the generic name */
  }
  let bootId: string | undefined;
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    bootId = undefined;
  }
  const facts: HostFacts = {
    hostname: hostname(),
    os,
    kernel: release(),
    arch: arch(),
    agentVersion,
    labels,
  };
  if (bootId) facts.bootId = bootId;
  return facts;
}

/** Differences between two process lists. */
export function diffProcesses(
  before: Map<string, PythonProcess>,
  after: PythonProcess[],
): { upserted: PythonProcess[]; removed: { pid: number; startTime: string }[] } {
  const next = new Map(after.map((p) => [key(p), p]));
  const upserted: PythonProcess[] = [];
  for (const [k, p] of next) {
    const old = before.get(k);
    if (!old || JSON.stringify(old) !== JSON.stringify(p)) upserted.push(p);
  }
  const removed: { pid: number; startTime: string }[] = [];
  for (const [k, p] of before) if (!next.has(k)) removed.push({ pid: p.pid, startTime: p.startTime });
  return { upserted, removed };
}

export class Inventory {
  private processes = new Map<string, PythonProcess>();
  private knownPids = new Set<number>();
  private scanning: Promise<InventoryDelta | null> | null = null;
  scannedAt: string | null = null;

  constructor(
    private readonly engine: Engine,
    private readonly procRoot = '/proc',
  ) {}

  list(): PythonProcess[] {
    return [...this.processes.values()];
  }

  byPid(pid: number): PythonProcess | undefined {
    for (const p of this.processes.values()) if (p.pid === pid) return p;
    return undefined;
  }

  snapshot(host: HostFacts): InventorySnapshot {
    return { host, processes: this.list(), scannedAt: this.scannedAt ?? new Date().toISOString() };
  }

  /** Full rediscovery; returns the delta against the previous view (null when nothing changed). */
  fullScan(): Promise<InventoryDelta | null> {
    return this.exclusive(async () => {
      const pids = listPids(this.procRoot);
      const found = await this.engine.discover({ pids });
      this.knownPids = new Set(pids);
      return this.apply(diffProcesses(this.processes, found), found);
    });
  }

  /** Inspect only pids that appeared since the last look; drop vanished ones. */
  quickCheck(): Promise<InventoryDelta | null> {
    return this.exclusive(async () => {
      const pids = listPids(this.procRoot);
      const now = new Set(pids);
      const fresh = pids.filter((p) => !this.knownPids.has(p));
      const gone = [...this.knownPids].filter((p) => !now.has(p));
      this.knownPids = now;
      if (fresh.length === 0 && gone.length === 0) return null;
      const found = fresh.length ? await this.engine.discover({ pids: fresh }) : [];
      const goneSet = new Set(gone);
      const upserted = found;
      const removed = [...this.processes.values()]
        .filter((p) => goneSet.has(p.pid))
        .map((p) => ({ pid: p.pid, startTime: p.startTime }));
      const after = [...this.processes.values()]
        .filter((p) => !goneSet.has(p.pid) && !found.some((f) => f.pid === p.pid))
        .concat(found);
      return this.apply({ upserted, removed }, after);
    });
  }

  private apply(
    d: { upserted: PythonProcess[]; removed: { pid: number; startTime: string }[] },
    after: PythonProcess[],
  ): InventoryDelta | null {
    this.processes = new Map(after.map((p) => [key(p), p]));
    this.scannedAt = new Date().toISOString();
    if (d.upserted.length === 0 && d.removed.length === 0) return null;
    return { upserted: d.upserted, removed: d.removed, scannedAt: this.scannedAt };
  }

  private async exclusive(fn: () => Promise<InventoryDelta | null>): Promise<InventoryDelta | null> {
    while (this.scanning) await this.scanning.catch(() => null);
    const p = fn();
    this.scanning = p;
    try {
      return await p;
    } finally {
      this.scanning = null;
    }
  }
}
