/**
 * Waking a target whose threads are all blocked (`wake`): PEP 768 runs a request only when the thread next runs
 * bytecode or checks for pending calls. CPython's own blocking calls retry EINTR through `PyErr_CheckSignals`
 * (PEP 475), which runs the pending remote-debugger call first. So a thread blocked in such a call can be made to
 * pick up by interrupting the call once: PTRACE_SEIZE + PTRACE_INTERRUPT stops it, and where the kernel would
 * transparently restart the call (-ERESTARTSYS, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK in rax) the engine sets
 * rax to -EINTR, so the call returns EINTR to CPython, which runs the request and retries the call. Then it
 * detaches. Nothing else of the thread changes.
 *
 * The risk, and why wake is opt-in and policy-gated: a syscall number does not prove CPython made the call. A C
 * extension (or a C library) blocked in `read` may not retry after EINTR and report an error instead. The engine
 * prefers threads whose Python stack is readable and non-empty (a Python frame called the blocking function),
 * wakes only calls CPython's wrappers retry (below), never a thread in uninterruptible sleep (D) and never a
 * lock (futex): CPython's lock waits go back to waiting without running the request, so waking them is useless.
 */
import type { ThreadRunState } from '@pyreach/protocol/inspect';
import { ptraceCalls } from './fsat';
import { readThreadStates } from './inspect/index';
import { readStacks } from './inspect/stacks';

/** Blocking calls CPython's wrappers retry after EINTR (PEP 475) and that wake may interrupt. */
export const WAKEABLE_SYSCALLS: ReadonlySet<string> = new Set([
  'read',
  'readv',
  'write',
  'writev',
  'recvfrom',
  'recvmsg',
  'sendto',
  'sendmsg',
  'accept',
  'accept4',
  'connect',
  'poll',
  'ppoll',
  'select',
  'pselect6',
  'epoll_wait',
  'epoll_pwait',
  'epoll_pwait2',
  'clock_nanosleep',
  'nanosleep',
  'wait4',
  'waitid',
]);

const LOCK_SYSCALLS: ReadonlySet<string> = new Set(['futex', 'futex_wait', 'futex_waitv']);

export interface SurveyedThread {
  tid: number;
  hostTid: number;
  name: string | null;
  main: boolean;
  state: ThreadRunState | null;
  syscall: { number: number; name: string | null } | null;
  /** Innermost Python frame's function, when the stack could be read: a Python frame made the blocking call. */
  pythonFrame: string | null;
}

/** The armed threads' states (two looks) and innermost Python frames, read from outside. */
export async function surveyThreads(opts: {
  procRoot: string;
  pid: number;
  tids: number[];
}): Promise<SurveyedThread[]> {
  const [states, stacks] = await Promise.all([
    readThreadStates({ pid: opts.pid, procRoot: opts.procRoot, tids: opts.tids, intervalMs: 20 }),
    readStacks({
      pid: opts.pid,
      procRoot: opts.procRoot,
      states: false,
      maxFrames: 4,
      timeoutMs: 1000,
    }).catch(() => null),
  ]);
  const frames = new Map<number, { fn: string | null; main: boolean }>();
  for (const t of stacks?.threads ?? [])
    if (t.interpreterId === 0) frames.set(t.tid, { fn: t.frames[0]?.function ?? null, main: t.main });
  return states.map((s) => ({
    tid: s.tid,
    hostTid: s.hostTid,
    name: s.name,
    main: frames.get(s.tid)?.main ?? false,
    state: s.state,
    syscall: s.state?.syscall ?? null,
    pythonFrame: frames.get(s.tid)?.fn ?? null,
  }));
}

function wakeable(t: SurveyedThread): boolean {
  const st = t.state;
  return (
    !!st &&
    st.status === 'blocked' &&
    st.procState === 'S' &&
    !st.uninterruptible &&
    st.stable &&
    !!t.syscall?.name &&
    WAKEABLE_SYSCALLS.has(t.syscall.name)
  );
}

/** The thread to wake: blocked (stably, interruptibly) in a call CPython retries; Python-called first, then main. */
export function chooseWake(survey: SurveyedThread[], tried: ReadonlySet<number>): SurveyedThread | null {
  const ok = survey.filter((t) => wakeable(t) && !tried.has(t.tid));
  const rank = (t: SurveyedThread): number => (t.pythonFrame ? 0 : 2) + (t.main ? 0 : 1);
  return ok.sort((a, b) => rank(a) - rank(b))[0] ?? null;
}

/** What each thread is blocked in, and whether wake would help: for a pickup_timeout's message. */
export function describeBlocked(survey: SurveyedThread[], wakeAsked: boolean): string {
  if (survey.length === 0) return 'its threads could not be looked at';
  const one = (t: SurveyedThread): string => {
    const who = `thread ${t.tid}${t.name ? ` (${t.name})` : ''}`;
    const st = t.state;
    if (!st) return `${who}: gone`;
    if (st.uninterruptible) return `${who}: in uninterruptible sleep (D), which nothing can wake`;
    if (st.status === 'running') return `${who}: running C code without reaching a safe point`;
    if (st.status !== 'blocked') return `${who}: ${st.status}`;
    const call = t.syscall ? (t.syscall.name ?? `syscall ${t.syscall.number}`) : null;
    if (!call) return `${who}: blocked outside a system call`;
    if (LOCK_SYSCALLS.has(call))
      return `${who}: blocked in ${call} (a lock, Event or condition wait): wake would not help, CPython waits again without running the request`;
    if (t.syscall?.name && WAKEABLE_SYSCALLS.has(t.syscall.name))
      return `${who}: blocked in ${call}${wakeAsked ? '' : ', which CPython retries after EINTR: --wake would help'}`;
    return `${who}: blocked in ${call}, which wake does not interrupt (CPython may not retry it)`;
  };
  const shown = survey.slice(0, 8).map(one);
  if (survey.length > 8) shown.push(`${survey.length - 8} more thread(s)`);
  return shown.join('; ');
}

const PTRACE_GETREGS = 12;
const PTRACE_SETREGS = 13;
const PTRACE_DETACH = 17;
const PTRACE_SEIZE = 0x4206;
const PTRACE_INTERRUPT = 0x4207;
const PTRACE_EVENT_STOP = 128;
const WNOHANG = 1;
const WALL = 0x40000000;
const EINTR = 4n;
/** Kernel-internal "restart me" returns a syscall shows in rax while stopped on its way out. */
const RESTARTS = new Set([
  -512n /* ERESTARTSYS */,
  -514n /* ERESTARTNOHAND */,
  -516n /* ERESTART_RESTARTBLOCK */,
]);
// x86-64 user_regs_struct: 27 unsigned longs; rax is the 11th, orig_rax the 16th.
const REGS_SIZE = 27 * 8;
const RAX = 10 * 8;
const ORIG_RAX = 15 * 8;

export type WakeOutcome = { ok: true; interrupted: boolean } | { ok: false; message: string };

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Interrupt thread `hostTid` (the engine's pid namespace) once, as above. Synchronous: every ptrace request must
 * come from the thread that seized. `expectNr` is the syscall number seen blocked: rax is only changed if the
 * stop shows that very call being restarted.
 */
export function wakeThread(hostTid: number, expectNr: number): WakeOutcome {
  if (process.arch !== 'x64')
    return { ok: false, message: `wake is implemented for x86-64 only (${process.arch})` };
  const c = ptraceCalls();
  const fail = (what: string): WakeOutcome => {
    const errno = c.errno();
    const why =
      errno === 1
        ? 'EPERM: the engine needs ptrace-attach rights (root or CAP_SYS_PTRACE; Yama ptrace_scope) over the target'
        : errno === 3
          ? 'ESRCH: the thread is gone'
          : `errno ${errno}`;
    return { ok: false, message: `${what} thread ${hostTid} failed: ${why}` };
  };
  if (Number(c.ptraceN(PTRACE_SEIZE, hostTid, 0, 0)) !== 0) return fail('PTRACE_SEIZE of');
  const detach = (sig: number): void => {
    c.ptraceN(PTRACE_DETACH, hostTid, 0, sig);
  };
  if (Number(c.ptraceN(PTRACE_INTERRUPT, hostTid, 0, 0)) !== 0) {
    const r = fail('PTRACE_INTERRUPT of');
    detach(0);
    return r;
  }
  // The stop arrives within microseconds for a thread in interruptible sleep; bounded anyway.
  const status = Buffer.alloc(4);
  const deadline = Date.now() + 2000;
  let got = 0;
  while ((got = c.waitpid(hostTid, status, WALL | WNOHANG)) === 0 && Date.now() < deadline)
    Atomics.wait(pause, 0, 0, 1);
  if (got !== hostTid) {
    detach(0);
    return { ok: false, message: `thread ${hostTid} did not stop for PTRACE_INTERRUPT within 2 s` };
  }
  const st = status.readInt32LE(0);
  if ((st & 0xff) !== 0x7f) return { ok: false, message: `thread ${hostTid} exited while being woken` };
  // A signal-delivery stop (some signal arrived meanwhile) must hand that signal back on detach.
  const sig = (st >> 8) & 0xff;
  const pendingSig = st >> 16 === PTRACE_EVENT_STOP ? 0 : sig;
  let interrupted = false;
  try {
    const regs = Buffer.alloc(REGS_SIZE);
    if (Number(c.ptrace(PTRACE_GETREGS, hostTid, null, regs)) === 0) {
      const rax = regs.readBigInt64LE(RAX);
      const orig = regs.readBigInt64LE(ORIG_RAX);
      if (orig === BigInt(expectNr) && RESTARTS.has(rax)) {
        regs.writeBigInt64LE(-EINTR, RAX);
        interrupted = Number(c.ptrace(PTRACE_SETREGS, hostTid, null, regs)) === 0;
      } else if (orig === BigInt(expectNr) && rax === -EINTR) interrupted = true;
    }
  } finally {
    detach(pendingSig);
  }
  return { ok: true, interrupted };
}
