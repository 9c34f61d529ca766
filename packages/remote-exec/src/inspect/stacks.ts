import type { InspectIssue, StackThread, StacksReport } from '@pyreach/protocol/inspect';
import { INSPECT_LIMITS } from '@pyreach/protocol/inspect';
import { issueOf } from './frames';
import { InspectFault, isFatal } from './memory';
import { listInterpreters, openSession, type InspectOptions, type Session } from './session';
import {
  listKernelThreads,
  lookAtThread,
  threadRunState,
  type KernelThread,
  type ThreadLook,
} from './threads';

export interface StacksOptions extends InspectOptions {
  /** Read each thread's state (running / blocked in which syscall, twice) — default true. */
  states?: boolean;
  /** Least time between the two looks at thread states (default 10 ms). */
  stateIntervalMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Statuses of a finished report: partial when anything carries an error. */
export function reportStatus(
  errors: InspectIssue[],
  entries: { error: InspectIssue | null }[],
): StacksReport['status'] {
  return errors.length || entries.some((e) => e.error) ? 'partial' : 'complete';
}

export function nowIso(): string {
  return new Date().toISOString();
}

/** Read one thread's stack, retrying walks that fail while the target changes the chain under us. */
type ThreadStack = Pick<StackThread, 'frames' | 'truncated' | 'error'> & { fatal: boolean };

function threadStack(s: Session, tstate: bigint): ThreadStack {
  const at = tstate + BigInt(s.o.tstate.currentFrame);
  let last: ThreadStack = { frames: [], truncated: false, error: null, fatal: false };
  for (let attempt = 0; attempt < s.limits.attempts; attempt++) {
    let head: bigint;
    try {
      head = s.mem.u64(at);
    } catch (e) {
      return { frames: [], truncated: false, error: issueOf(e), fatal: isFatal(e) };
    }
    const r = s.frames.walk(head);
    if (!r.error || r.fatal) return r;
    let after: bigint | null = null;
    try {
      after = s.mem.u64(at);
    } catch (e) {
      if (isFatal(e)) return { ...r, error: issueOf(e), fatal: true };
    }
    // The thread moved on while we walked: what failed was most likely a torn read.
    last =
      after !== head && attempt === s.limits.attempts - 1
        ? {
            ...r,
            error: {
              code: 'TORN',
              message: `the stack kept changing while it was read (${r.error.message})`,
            },
          }
        : r;
  }
  return last;
}

/**
 * Every thread's Python stack (innermost first) in every interpreter of `pid`, read from its memory over
 * /proc/PID/mem: no code runs in the target, nothing is written, nothing is paused. Works where remote
 * debugging is disabled, when every thread is blocked, in containers. Never throws: problems become
 * `errors` (whole process) or a thread's `error` (with the frames read before it).
 */
export async function readStacks(opts: StacksOptions): Promise<StacksReport> {
  const started = performance.now();
  const readAt = nowIso();
  const procRoot = opts.procRoot ?? '/proc';
  const wantStates = opts.states ?? true;
  const interval = Math.max(0, Math.min(opts.stateIntervalMs ?? 10, 1000));
  const base = {
    pid: opts.pid,
    nsPid: null as number | null,
    pythonVersion: null as string | null,
    readAt,
    bytesRead: 0,
    remoteDebugEnabled: null as boolean | null,
    interpreters: [] as StacksReport['interpreters'],
    threads: [] as StackThread[],
  };
  const finish = (errors: InspectIssue[], status?: StacksReport['status']): StacksReport => ({
    ...base,
    status: status ?? reportStatus(errors, base.threads),
    durationMs: +(performance.now() - started).toFixed(3),
    errors: errors.slice(0, INSPECT_LIMITS.errors),
  });
  try {
    const kernel1 = listKernelThreads(procRoot, opts.pid);
    const looks1 = new Map<number, ThreadLook | null>();
    if (wantStates)
      for (const k of kernel1.values()) looks1.set(k.hostTid, lookAtThread(procRoot, opts.pid, k.hostTid));
    const opened = openSession(opts, started);
    if (!opened.ok) {
      base.nsPid = opened.nsPid;
      base.pythonVersion = opened.version;
      return finish([opened.issue], 'failed');
    }
    const s = opened.session;
    base.nsPid = s.nsPid;
    base.pythonVersion = s.version;
    const errors: InspectIssue[] = [];
    try {
      const { interpreters, error } = listInterpreters(s);
      if (error) errors.push(error);
      const gilHolders = new Set(interpreters.map((i) => i.gilHolder).filter((h): h is bigint => h !== null));
      base.remoteDebugEnabled = interpreters.find((i) => i.id === 0)?.remoteDebugEnabled ?? null;
      base.interpreters = interpreters.map((i) => ({
        id: i.id,
        threads: i.threads.length,
        remoteDebugEnabled: i.remoteDebugEnabled,
      }));
      for (const i of interpreters)
        if (i.error) errors.push({ ...i.error, message: `interpreter ${i.id}: ${i.error.message}` });
      const pending: { thread: StackThread; kernel: KernelThread | undefined }[] = [];
      try {
        for (const i of interpreters) {
          const ordered = [...i.threads].sort(
            (a, b) => Number(b.tstate === i.mainTstate) - Number(a.tstate === i.mainTstate),
          );
          for (const t of ordered) {
            if (base.threads.length >= INSPECT_LIMITS.threads) break;
            const k = kernel1.get(t.tid);
            const thread: StackThread = {
              tid: t.tid,
              hostTid: k?.hostTid ?? null,
              name: k?.comm ?? null,
              main: t.tstate === i.mainTstate,
              interpreterId: i.id,
              holdsGil: s.o.freeThreaded ? null : gilHolders.has(t.tstate),
              state: null,
              frames: [],
              truncated: false,
              error: null,
            };
            base.threads.push(thread);
            pending.push({ thread, kernel: k });
            const { fatal, ...stack } = threadStack(s, t.tstate);
            Object.assign(thread, stack);
            // Out of budget or time: the rest of the threads are not read (the report says why).
            if (fatal) throw new InspectFault(stack.error!.code, stack.error!.message);
          }
        }
      } catch (e) {
        if (!isFatal(e)) throw e;
        errors.push(issueOf(e));
      }
      base.bytesRead = s.mem.bytesRead;
      // Threads started while we read are not in the first listing: look once more for them.
      if (pending.some((p) => !p.kernel)) {
        const kernel2 = listKernelThreads(procRoot, opts.pid);
        for (const p of pending) {
          if (p.kernel) continue;
          p.kernel = kernel2.get(p.thread.tid);
          p.thread.hostTid = p.kernel?.hostTid ?? null;
          p.thread.name = p.kernel?.comm ?? null;
        }
      }
      if (wantStates) {
        const waited = performance.now() - started;
        if (waited < interval) await sleep(interval - waited);
        for (const { thread, kernel } of pending) {
          if (!kernel) continue;
          thread.state = threadRunState(
            looks1.get(kernel.hostTid) ?? null,
            lookAtThread(procRoot, opts.pid, kernel.hostTid),
          );
        }
      }
    } finally {
      s.close();
    }
    return finish(errors);
  } catch (e) {
    return finish([issueOf(e)], base.threads.length ? 'partial' : 'failed');
  }
}
