import { readFileSync, readdirSync } from 'node:fs';
import type { ThreadRunState } from '@pyreach/protocol/inspect';
import { encodeBytes } from '@pyreach/protocol/text';
import { parseStat, parseStatus, procPath } from '../procfs';

/**
 * Threads as the kernel sees them: /proc/PID/task/TID/{status,comm,stat,syscall,wchan}. Names and ids are
 * facts that change rarely; states change constantly, so they are read only on demand (a stacks dump, a
 * pre-flight check), never with every inventory scan.
 */

export interface KernelThread {
  /** Id in the reader's pid namespace (the /proc/PID/task entry). */
  hostTid: number;
  /** Id in the target's own pid namespace (last NSpid value): what CPython stores as native_thread_id. */
  nsTid: number;
  /** `comm` as safe text (CPython 3.14's threading sets it to the Python thread name, cut to 15 bytes). */
  comm: string | null;
}

const MAX_TASKS = 16_384;

/** Every thread of `pid`, keyed by its id in the target's namespace. */
export function listKernelThreads(procRoot: string, pid: number): Map<number, KernelThread> {
  const out = new Map<number, KernelThread>();
  let names: string[];
  try {
    names = readdirSync(procPath(procRoot, pid, 'task'));
  } catch {
    return out;
  }
  for (const n of names.slice(0, MAX_TASKS)) {
    if (!/^\d+$/.test(n)) continue;
    const hostTid = Number(n);
    let nsTid = hostTid;
    try {
      const st = parseStatus(readFileSync(procPath(procRoot, pid, 'task', n, 'status'), 'utf8'));
      nsTid = st.nsPids[st.nsPids.length - 1] ?? hostTid;
    } catch {
      continue; // exited meanwhile
    }
    let comm: string | null = null;
    try {
      const raw = readFileSync(procPath(procRoot, pid, 'task', n, 'comm'));
      comm = encodeBytes(
        raw.subarray(0, raw.length && raw[raw.length - 1] === 0x0a ? raw.length - 1 : raw.length),
      );
    } catch {
      /* exited meanwhile */
    }
    out.set(nsTid, { hostTid, nsTid, comm });
  }
  return out;
}

/** One look at a thread: its stat letter, syscall and wait channel. */
export interface ThreadLook {
  procState: string | null;
  /** Syscall number it sits in; null when running in user space or not in a syscall; undefined: unknown. */
  syscall: number | null | undefined;
  wchan: string | null;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function lookAtThread(procRoot: string, pid: number, hostTid: number): ThreadLook | null {
  const base = procPath(procRoot, pid, 'task', String(hostTid));
  const stat = readText(`${base}/stat`);
  if (stat === null) return null;
  let procState: string | null = null;
  try {
    procState = parseStat(stat).state.slice(0, 1) || null;
  } catch {
    /* malformed */
  }
  // "running" (user space), "-1 sp pc" (blocked, but not in a syscall), or "nr a1 … a6 sp pc".
  const sc = readText(`${base}/syscall`);
  let syscall: number | null | undefined;
  if (sc === null) syscall = undefined;
  else {
    const first = sc.trim().split(/\s+/)[0] ?? '';
    if (first === 'running' || first === '-1') syscall = null;
    else if (/^\d+$/.test(first)) syscall = Number(first);
    else syscall = undefined;
  }
  const w = readText(`${base}/wchan`)?.trim() ?? null;
  const wchan = w && w !== '0' ? encodeBytes(Buffer.from(w.slice(0, 127), 'utf8')) : null;
  return { procState, syscall, wchan };
}

function statusOf(look: ThreadLook): ThreadRunState['status'] {
  switch (look.procState) {
    case 'R':
      return 'running';
    case 'S':
    case 'D':
    case 'I':
    case 'P':
    case 'W':
    case 'K':
      return 'blocked';
    case 'T':
    case 't':
      return 'stopped';
    case 'Z':
    case 'X':
    case 'x':
      return 'exited';
    default:
      return 'unknown';
  }
}

/** Combine two looks at the same thread into its reported state. */
export function threadRunState(
  first: ThreadLook | null,
  second: ThreadLook | null,
  arch = process.arch,
): ThreadRunState | null {
  const last = second ?? first;
  if (!last) return null;
  const status = second === null && first !== null ? 'exited' : statusOf(last);
  const nr = status === 'blocked' && typeof last.syscall === 'number' ? last.syscall : null;
  const stable =
    first !== null &&
    second !== null &&
    statusOf(first) === statusOf(second) &&
    first.procState === second.procState &&
    (status !== 'blocked' || first.syscall === second.syscall);
  return {
    status,
    procState: last.procState,
    syscall: nr === null ? null : { number: nr, name: syscallName(nr, arch) },
    wchan: status === 'blocked' ? last.wchan : null,
    uninterruptible: last.procState === 'D',
    stable,
  };
}

function syscallTable(spec: string): Map<number, string> {
  const out = new Map<number, string>();
  const f = spec.trim().split(/\s+/);
  for (let i = 0; i + 1 < f.length; i += 2) out.set(Number(f[i]), f[i + 1]!);
  return out;
}

// Syscalls a thread of a CPython process is commonly found in, by architecture. Others show by number.
const X64 = syscallTable(`
  0 read 1 write 2 open 3 close 7 poll 8 lseek 9 mmap 11 munmap 16 ioctl 17 pread64 18 pwrite64
  19 readv 20 writev 22 pipe 23 select 24 sched_yield 34 pause 35 nanosleep 42 connect 43 accept
  44 sendto 45 recvfrom 46 sendmsg 47 recvmsg 56 clone 57 fork 59 execve 61 wait4 62 kill 72 fcntl
  73 flock 74 fsync 101 ptrace 128 rt_sigtimedwait 130 rt_sigsuspend 202 futex 230 clock_nanosleep
  232 epoll_wait 247 waitid 257 openat 270 pselect6 271 ppoll 281 epoll_pwait 288 accept4 299 recvmmsg
  307 sendmmsg 426 io_uring_enter 441 epoll_pwait2 449 futex_wait 455 futex_waitv
`);
const ARM64 = syscallTable(`
  22 epoll_pwait 25 fcntl 29 ioctl 32 flock 56 openat 57 close 63 read 64 write 65 readv 66 writev
  67 pread64 68 pwrite64 72 pselect6 73 ppoll 82 fsync 95 waitid 98 futex 101 nanosleep
  115 clock_nanosleep 117 ptrace 124 sched_yield 133 rt_sigsuspend 137 rt_sigtimedwait 202 accept
  203 connect 206 sendto 207 recvfrom 211 sendmsg 212 recvmsg 215 munmap 220 clone 221 execve 222 mmap
  242 accept4 243 recvmmsg 260 wait4 269 sendmmsg 426 io_uring_enter 441 epoll_pwait2 449 futex_wait
  455 futex_waitv
`);

export function syscallName(nr: number, arch = process.arch): string | null {
  const table = arch === 'x64' ? X64 : arch === 'arm64' ? ARM64 : null;
  return table?.get(nr) ?? null;
}
