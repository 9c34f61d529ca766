/**
 * Inspection that runs no code in the target: stacks and asyncio tasks read from its memory, thread names and
 * states read from /proc. See README.md ("Inspection").
 */
import type { ThreadRunState } from '@pyreach/protocol/inspect';
import { listKernelThreads, lookAtThread, threadRunState } from './threads';

export { readStacks, type StacksOptions } from './stacks';
export { readTasks, type TasksOptions } from './tasks';
export { INSPECT_DEFAULTS, type InspectOptions } from './session';
export { syscallName } from './threads';

export interface ThreadFact {
  /** Native thread id in the target's own namespace (as discover() and `run --tid` use it). */
  tid: number;
  hostTid: number;
  /** The thread's comm (CPython 3.14 sets it to the Python thread name, cut to 15 bytes), safe text. */
  name: string | null;
}

/** Every thread of `pid` with its name, from /proc only (cheap: for inventory scans). */
export function threadFacts(opts: { pid: number; procRoot?: string }): ThreadFact[] {
  return [...listKernelThreads(opts.procRoot ?? '/proc', opts.pid).values()].map((k) => ({
    tid: k.nsTid,
    hostTid: k.hostTid,
    name: k.comm,
  }));
}

export interface ThreadStateFact extends ThreadFact {
  state: ThreadRunState | null;
}

/**
 * What each thread is doing now — running, or blocked in which syscall — looked at twice `intervalMs` apart
 * (default 20 ms) so `stable` says whether it stayed so. On demand only (pre-flight checks, a detail view):
 * states change constantly and are never part of an inventory scan. `tids` (target namespace) narrows it.
 */
export async function readThreadStates(opts: {
  pid: number;
  procRoot?: string;
  tids?: number[];
  intervalMs?: number;
}): Promise<ThreadStateFact[]> {
  const procRoot = opts.procRoot ?? '/proc';
  const wanted = opts.tids ? new Set(opts.tids) : null;
  const threads = [...listKernelThreads(procRoot, opts.pid).values()].filter(
    (k) => !wanted || wanted.has(k.nsTid),
  );
  const first = threads.map((k) => lookAtThread(procRoot, opts.pid, k.hostTid));
  await new Promise((r) => setTimeout(r, Math.max(0, Math.min(opts.intervalMs ?? 20, 5000))));
  return threads.map((k, i) => ({
    tid: k.nsTid,
    hostTid: k.hostTid,
    name: k.comm,
    state: threadRunState(first[i] ?? null, lookAtThread(procRoot, opts.pid, k.hostTid)),
  }));
}
