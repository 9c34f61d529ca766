import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

/** Reading /proc. Every function takes `procRoot` so tests can point it at a fake tree. */

export interface MapEntry {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: string;
  /** Path as the kernel prints it (without the ` (deleted)` suffix), or '' for anonymous mappings. */
  path: string;
  deleted: boolean;
}

// start-end perms offset dev inode [path]; the path may contain spaces and end in " (deleted)".
const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+(\S+)\s+(\d+)\s*(.*)$/;

export function parseMaps(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  for (const line of text.split('\n')) {
    const m = MAPS_LINE.exec(line);
    if (!m) continue;
    let path = m[7] ?? '';
    let deleted = false;
    if (path.endsWith(' (deleted)')) {
      path = path.slice(0, -' (deleted)'.length);
      deleted = true;
    }
    out.push({
      start: BigInt('0x' + m[1]),
      end: BigInt('0x' + m[2]),
      perms: m[3]!,
      offset: BigInt('0x' + m[4]),
      dev: m[5]!,
      inode: m[6]!,
      path,
      deleted,
    });
  }
  return out;
}

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** Field 22, clock ticks since boot, as a decimal string. */
  startTime: string;
}

export function parseStat(text: string): ProcStat {
  // comm is in parentheses and may itself contain spaces and parentheses: split at the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error('malformed /proc/PID/stat');
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  const rest = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state); field N is rest[N - 3].
  return { pid, comm, state: rest[0] ?? '?', ppid: Number(rest[1]), startTime: rest[19] ?? '0' };
}

export interface ProcStatus {
  uid: number;
  gid: number;
  /** The pid in each nested pid namespace, outermost first; the last one is the pid the process sees. */
  nsPids: number[];
  ppid: number;
}

export function parseStatus(text: string): ProcStatus {
  const field = (name: string): string | undefined => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text);
    return m?.[1];
  };
  const uid = Number((field('Uid') ?? '0').split(/\s+/)[0]);
  const gid = Number((field('Gid') ?? '0').split(/\s+/)[0]);
  const nsPids = (field('NSpid') ?? field('Pid') ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
  return { uid, gid, nsPids, ppid: Number(field('PPid') ?? 0) };
}

export function procPath(procRoot: string, pid: number | 'self', ...rest: string[]): string {
  return [procRoot, String(pid), ...rest].join('/');
}

export function readStat(procRoot: string, pid: number): ProcStat | null {
  try {
    return parseStat(readFileSync(procPath(procRoot, pid, 'stat'), 'utf8'));
  } catch {
    return null;
  }
}

/** Start time of `pid`, or null when it no longer exists. */
export function readStartTime(procRoot: string, pid: number): string | null {
  return readStat(procRoot, pid)?.startTime ?? null;
}

export function readStatus(procRoot: string, pid: number): ProcStatus | null {
  try {
    return parseStatus(readFileSync(procPath(procRoot, pid, 'status'), 'utf8'));
  } catch {
    return null;
  }
}

export function readCmdline(procRoot: string, pid: number): string[] {
  try {
    const raw = readFileSync(procPath(procRoot, pid, 'cmdline'), 'utf8');
    const parts = raw.split('\0');
    if (parts.length && parts[parts.length - 1] === '') parts.pop();
    return parts;
  } catch {
    return [];
  }
}

export function readLinkOrNull(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

export function readMaps(procRoot: string, pid: number): MapEntry[] {
  return parseMaps(readFileSync(procPath(procRoot, pid, 'maps'), 'utf8'));
}

/** Namespace identity (`mnt:[4026531841]`) or null. */
export function readNs(procRoot: string, pid: number | 'self', ns: 'mnt' | 'pid'): string | null {
  return readLinkOrNull(procPath(procRoot, pid, 'ns', ns));
}

export function listPids(procRoot: string, readdir: (p: string) => string[]): number[] {
  const out: number[] = [];
  for (const name of readdir(procRoot)) if (/^\d+$/.test(name)) out.push(Number(name));
  return out.sort((a, b) => a - b);
}

/** Mappings worth checking for a `_PyRuntime`: one per file (the offset-0 mapping). */
export function candidateImages(maps: MapEntry[], exe: string | null): MapEntry[] {
  const seen = new Set<string>();
  const out: MapEntry[] = [];
  for (const m of maps) {
    if (!m.path.startsWith('/') || m.offset !== 0n) continue;
    const key = `${m.dev}:${m.inode}:${m.path}`;
    if (seen.has(key)) continue;
    const base = basename(m.path);
    if (base.includes('python') || m.path === exe) {
      seen.add(key);
      out.push(m);
    }
  }
  // Python-named files first: they are by far the likeliest hosts of _PyRuntime.
  return out.sort(
    (a, b) => Number(basename(b.path).includes('python')) - Number(basename(a.path).includes('python')),
  );
}

export function parsePasswd(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && /^\d+$/.test(f[2]!)) {
      const uid = Number(f[2]);
      if (!out.has(uid)) out.set(uid, f[0]!);
    }
  }
  return out;
}
