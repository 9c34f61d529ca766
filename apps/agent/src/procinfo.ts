/** Facts about a target process read straight from /proc at the moment a job is checked. */
import { readFileSync } from 'node:fs';

export interface TargetFacts {
  pid: number;
  /** Field 22 of /proc/PID/stat (clock ticks since boot), decimal. */
  startTime: string;
  /** Real, effective, saved and filesystem uid as this agent's namespace sees them. */
  uids: [number, number, number, number];
  gid: number;
}

/** Start time from /proc/PID/stat; the command name may contain spaces and parentheses, so parse after the last ')'. */
export function parseStatStartTime(stat: string): string | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); start time is field 22.
  const v = fields[22 - 3];
  return v && /^\d+$/.test(v) ? v : null;
}

export function readTargetFacts(pid: number, procRoot = '/proc'): TargetFacts | null {
  try {
    const startTime = parseStatStartTime(readFileSync(`${procRoot}/${pid}/stat`, 'utf8'));
    const status = readFileSync(`${procRoot}/${pid}/status`, 'utf8');
    const uidLine = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
    const gidLine = /^Gid:\s+(\d+)\s+(\d+)/m.exec(status);
    if (!startTime || !uidLine) return null;
    return {
      pid,
      startTime,
      uids: [Number(uidLine[1]), Number(uidLine[2]), Number(uidLine[3]), Number(uidLine[4])],
      gid: gidLine ? Number(gidLine[2]) : 0,
    };
  } catch {
    return null;
  }
}

/** uid → name from an /etc/passwd text. */
export function passwdName(passwd: string, uid: number): string | null {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && Number(f[2]) === uid && f[0]) return f[0];
  }
  return null;
}

export function hostUserName(uid: number): string | null {
  try {
    return passwdName(readFileSync('/etc/passwd', 'utf8'), uid);
  } catch {
    return null;
  }
}
