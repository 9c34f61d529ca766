import { basename } from 'node:path';
import type {
  AsyncTask,
  AwaitingFuture,
  InspectIssue,
  StackFrame,
  TaskAwaiter,
  TasksReport,
} from '@pyreach/protocol/inspect';
import { INSPECT_LIMITS } from '@pyreach/protocol/inspect';
import type { MapEntry } from '../procfs';
import { issueOf } from './frames';
import { mappedSection } from './images';
import { InspectFault, imageKey, isFatal } from './memory';
import { Py_TPFLAGS_LONG_SUBCLASS, Py_TPFLAGS_UNICODE_SUBCLASS } from './objects';
import { listInterpreters, openSession, type InspectOptions, type Session } from './session';
import { nowIso, reportStatus } from './stacks';

/**
 * asyncio tasks out of a target's memory, like CPython 3.14's `python -m asyncio ps|pstree`, without running
 * anything in it.
 *
 * Where: the `_asyncio` C module carries its own offsets in an ELF section `.AsyncioDebug`
 * (`_Py_AsyncioModuleDebugOffsets`: 13 u64 — TaskObj size and the offsets of task_name, task_awaited_by,
 * task_is_task, task_awaited_by_is_set, task_coro, task_node; the per-interpreter list head; the per-thread
 * size, running loop, running task and list head). Every live task is linked into a list: one per thread state
 * (tasks created on that thread) and one per interpreter (tasks whose thread has exited). A task's name is a
 * str, or an int N meaning "Task-N" until asked for; its coroutine chain runs from `task_coro` through each
 * coroutine suspended in `await` (frame state SUSPENDED_YIELD_FROM) to the object on top of its frame's
 * stack, as long as that is a coroutine of the same type; `task_awaited_by` is one awaiter or a set of them.
 */

export type TasksOptions = InspectOptions;

/** `PyFrameState` values of 3.14 that matter here. */
const FRAME_SUSPENDED_YIELD_FROM = -1;
const FRAME_COMPLETED = 1;

interface AsyncioOffsets {
  module: string;
  taskSize: number;
  taskName: number;
  taskAwaitedBy: number;
  taskIsTask: number;
  taskAwaitedByIsSet: number;
  taskCoro: number;
  taskNode: number;
  interpTasksHead: number;
  tstateRunningLoop: number;
  tstateRunningTask: number;
  tstateTasksHead: number;
}

const SECTION_U64S = 13;

export function parseAsyncioOffsets(data: Buffer, module: string, interpSize: number): AsyncioOffsets {
  if (data.length < SECTION_U64S * 8)
    throw new InspectFault(
      'UNSUPPORTED_VERSION',
      `${module}: the AsyncioDebug section has ${data.length} bytes, not the ${SECTION_U64S * 8} of CPython 3.14`,
    );
  const u = (i: number): number => {
    const v = data.readBigUInt64LE(i * 8);
    if (v > 16n * 1024n * 1024n)
      throw new InspectFault('CORRUPT', `${module}: AsyncioDebug value ${i} is implausible`);
    return Number(v);
  };
  const a: AsyncioOffsets = {
    module,
    taskSize: u(0),
    taskName: u(1),
    taskAwaitedBy: u(2),
    taskIsTask: u(3),
    taskAwaitedByIsSet: u(4),
    taskCoro: u(5),
    taskNode: u(6),
    interpTasksHead: u(8),
    tstateRunningLoop: u(10),
    tstateRunningTask: u(11),
    tstateTasksHead: u(12),
  };
  const interpSz = u(7);
  const tstateSz = u(9);
  const bad =
    a.taskSize === 0 ||
    a.taskSize > 4096 ||
    [a.taskName, a.taskAwaitedBy, a.taskIsTask, a.taskAwaitedByIsSet, a.taskCoro, a.taskNode].some(
      (o) => o >= a.taskSize,
    ) ||
    interpSz !== interpSize ||
    a.interpTasksHead + 16 > interpSz ||
    tstateSz === 0 ||
    tstateSz > 65536 ||
    [a.tstateRunningLoop, a.tstateRunningTask, a.tstateTasksHead + 8].some((o) => o >= tstateSz);
  if (bad)
    throw new InspectFault('CORRUPT', `${module}: the AsyncioDebug offsets do not describe this interpreter`);
  return a;
}

/** Find `.AsyncioDebug`: in the `_asyncio` extension when loaded as one, else in the interpreter image. */
function locateAsyncio(s: Session): { offsets: AsyncioOffsets; imageKeys: string[] } | InspectIssue {
  const candidates: MapEntry[] = [];
  for (const m of s.maps)
    if (m.offset === 0n && m.path.startsWith('/') && /^_asyncio\./.test(basename(m.path))) candidates.push(m);
  for (const m of s.maps) if (m.offset === 0n && m.path === s.loc.image) candidates.push(m);
  let problem: InspectIssue | null = null;
  for (const m of candidates) {
    const sec = mappedSection(s.procRoot, s.pid, m, '.AsyncioDebug', 4096);
    if (!sec) continue;
    try {
      const offsets = parseAsyncioOffsets(sec.data, m.path, s.o.interp.size);
      return { offsets, imageKeys: [imageKey(m)] };
    } catch (e) {
      problem = issueOf(e);
    }
  }
  return (
    problem ?? {
      code: 'ASYNCIO_UNAVAILABLE',
      message: candidates.some((m) => m.path !== s.loc.image)
        ? "asyncio's C module is loaded but its AsyncioDebug section could not be read"
        : "the process has not loaded asyncio's C module (_asyncio): it has no asyncio tasks to read",
    }
  );
}

const hexId = (addr: bigint): string => `0x${addr.toString(16)}`;

class TaskReader {
  private readonly names = new Map<bigint, string | null>();

  constructor(
    private readonly s: Session,
    private readonly a: AsyncioOffsets,
  ) {}

  /** `Task.get_name()` as the target would answer it. */
  name(task: bigint): string {
    const hit = this.names.get(task);
    if (hit !== undefined && hit !== null) return hit;
    const { objects } = this.s;
    const obj = this.s.mem.ptr(task + BigInt(this.a.taskName));
    if (obj === 0n) throw new InspectFault('CORRUPT', `task ${hexId(task)} has no name object`);
    const flags = objects.typeInfo(objects.typeOf(obj)).flags;
    let name: string;
    if (flags & Py_TPFLAGS_LONG_SUBCLASS) name = `Task-${objects.smallInt(obj)}`;
    else if (flags & Py_TPFLAGS_UNICODE_SUBCLASS) {
      const t = objects.unicode(obj, 256);
      name = t.truncated ? `${t.text}…` : t.text;
    } else throw new InspectFault('CORRUPT', `the name of task ${hexId(task)} is neither str nor int`);
    if (this.names.size < 100_000) this.names.set(task, name);
    return name;
  }

  isTask(obj: bigint): boolean {
    const v = this.s.mem.u8(obj + BigInt(this.a.taskIsTask));
    if (v > 1) throw new InspectFault('CORRUPT', `object ${hexId(obj)} is neither a Task nor a Future`);
    return v === 1;
  }

  /** A coroutine and what it awaits, innermost first. */
  coroutineStack(coro: bigint): { frames: StackFrame[]; truncated: boolean; error: InspectIssue | null } {
    const { mem, objects, o } = this.s;
    const outerFirst: StackFrame[] = [];
    const seen = new Set<bigint>();
    let error: InspectIssue | null = null;
    let truncated = false;
    let cur = coro;
    try {
      while (cur !== 0n) {
        if (outerFirst.length >= this.s.limits.maxFrames) {
          truncated = true;
          break;
        }
        if (seen.has(cur)) {
          error = { code: 'CYCLE', message: `the coroutine chain loops back to ${hexId(cur)}` };
          break;
        }
        seen.add(cur);
        const state = mem.read(cur + BigInt(o.gen.frameState), 1).readInt8(0);
        if (state >= FRAME_COMPLETED) break; // finished: its frame is gone
        const genType = objects.typeOf(cur);
        const fr = this.s.frames.frame(cur + BigInt(o.gen.iframe));
        if (fr.shown) outerFirst.push(fr.shown);
        if (fr.issue && !error) error = fr.issue;
        if (state !== FRAME_SUSPENDED_YIELD_FROM || fr.stackpointer === 0n) break;
        const awaited = mem.ptr(fr.stackpointer - 8n);
        // Awaiting something that is not a coroutine of the same kind (a Future, an iterator): the chain ends.
        if (awaited === 0n || objects.typeOf(awaited) !== genType) break;
        cur = awaited;
      }
    } catch (e) {
      if (isFatal(e)) throw e;
      error = issueOf(e);
    }
    return { frames: outerFirst.reverse(), truncated, error };
  }

  /** Who awaits `obj` (a task or future): one object, or a set of them. */
  awaitedBy(obj: bigint): TaskAwaiter[] {
    const { mem, objects, o } = this.s;
    const ab = mem.ptr(obj + BigInt(this.a.taskAwaitedBy));
    if (ab === 0n) return [];
    const keys: bigint[] = [];
    if (mem.u8(obj + BigInt(this.a.taskAwaitedByIsSet)) === 0) keys.push(ab);
    else {
      const head = mem.read(ab, o.set.size);
      const used = head.readBigInt64LE(o.set.used);
      const mask = head.readBigInt64LE(o.set.mask);
      const table = head.readBigUInt64LE(o.set.table) & ~3n;
      const slots = mask + 1n;
      if (mask < 0n || slots > 65536n || (slots & mask) !== 0n || used < 0n || used > slots)
        throw new InspectFault('CORRUPT', `the awaited-by set of ${hexId(obj)} is malformed`);
      const entries = mem.read(table, Number(slots) * 16);
      for (let i = 0; i < Number(slots) && keys.length < INSPECT_LIMITS.awaiters; i++) {
        const key = entries.readBigUInt64LE(i * 16) & ~3n;
        if (key === 0n) continue;
        // Removed entries hold the set's "dummy" object.
        if (objects.typeInfo(objects.typeOf(key)).name === '<dummy key> type') continue;
        keys.push(key);
      }
    }
    return keys.map((k) => {
      const task = this.isTask(k);
      return { id: hexId(k), task, name: task ? this.name(k) : null };
    });
  }
}

/** Walk one `llist_node` ring: the task addresses linked into it, in list order. */
function taskList(
  s: Session,
  a: AsyncioOffsets,
  head: bigint,
  limit: number,
): { tasks: bigint[]; error: InspectIssue | null } {
  const { mem, o } = s;
  const tasks: bigint[] = [];
  const seen = new Set<bigint>();
  let node = mem.u64(head + BigInt(o.llist.next));
  while (node !== head) {
    if (node === 0n)
      return { tasks, error: { code: 'CORRUPT', message: 'a task list is broken (NULL link)' } };
    if (tasks.length >= limit)
      return {
        tasks,
        error: { code: 'TRUNCATED', message: `more than ${limit} tasks; the rest are not shown` },
      };
    if (seen.has(node))
      return { tasks, error: { code: 'CYCLE', message: 'a task list loops without returning to its head' } };
    seen.add(node);
    tasks.push(node - BigInt(a.taskNode));
    node = mem.u64(node + BigInt(o.llist.next));
  }
  return { tasks, error: null };
}

/**
 * The asyncio tasks of every thread and interpreter of `pid`, with their names, coroutine stacks (innermost
 * first) and who awaits them, read from memory: nothing runs in the target. Never throws.
 */
export async function readTasks(opts: TasksOptions): Promise<TasksReport> {
  const started = performance.now();
  const readAt = nowIso();
  const base = {
    pid: opts.pid,
    nsPid: null as number | null,
    pythonVersion: null as string | null,
    readAt,
    bytesRead: 0,
    asyncio: { loaded: false, module: null as string | null },
    tasks: [] as AsyncTask[],
    futures: [] as AwaitingFuture[],
  };
  const finish = (errors: InspectIssue[], status?: TasksReport['status']): TasksReport => ({
    ...base,
    status: status ?? reportStatus(errors, base.tasks),
    durationMs: +(performance.now() - started).toFixed(3),
    errors: errors.slice(0, INSPECT_LIMITS.errors),
  });
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
    const found = locateAsyncio(s);
    if ('code' in found) {
      if (found.code === 'ASYNCIO_UNAVAILABLE') {
        // A truthful empty answer: no C asyncio, no tasks (pure-Python asyncio keeps no such lists).
        base.bytesRead = s.mem.bytesRead;
        return finish([], 'complete');
      }
      return finish([found], 'failed');
    }
    const a = found.offsets;
    base.asyncio = { loaded: true, module: a.module };
    for (const k of found.imageKeys) s.images.add(k);
    s.mem.refresh();
    const reader = new TaskReader(s, a);
    const { interpreters, error } = listInterpreters(s);
    if (error) errors.push(error);
    const futures = new Map<bigint, AwaitingFuture>();
    const futureQueue: bigint[] = [];
    const addTask = (
      addr: bigint,
      tid: number | null,
      interpreterId: number,
      running: boolean,
      tstate: bigint | null,
    ): void => {
      const task: AsyncTask = {
        id: hexId(addr),
        name: null,
        tid,
        interpreterId,
        running,
        stack: [],
        truncated: false,
        awaitedBy: [],
        error: null,
      };
      base.tasks.push(task);
      for (let attempt = 0; attempt < s.limits.attempts; attempt++) {
        try {
          if (!reader.isTask(addr))
            throw new InspectFault('CORRUPT', `${hexId(addr)} in a task list is not a task`);
          task.name = reader.name(addr);
          const coro = s.mem.ptr(addr + BigInt(a.taskCoro));
          let st: { frames: StackFrame[]; truncated: boolean; error: InspectIssue | null } =
            coro === 0n ? { frames: [], truncated: false, error: null } : reader.coroutineStack(coro);
          // The task running now: its coroutine's frame is on its thread's stack, under whatever it is
          // executing (coroutines it awaits, plain calls). Show that part of the thread's stack.
          if (running && tstate !== null && coro !== 0n) {
            const head = s.mem.u64(tstate + BigInt(s.o.tstate.currentFrame));
            const w = s.frames.walk(head, coro + BigInt(s.o.gen.iframe));
            if (w.fatal) throw new InspectFault(w.error!.code, w.error!.message);
            if (w.reached) st = w;
          }
          task.stack = st.frames;
          task.truncated = st.truncated;
          task.awaitedBy = reader.awaitedBy(addr);
          task.error = st.error;
        } catch (e) {
          if (isFatal(e)) throw e;
          task.error = issueOf(e);
        }
        if (!task.error || task.error.code === 'TRUNCATED') break;
      }
      for (const w of task.awaitedBy) if (!w.task) futureQueue.push(BigInt(w.id));
    };
    try {
      for (const interp of interpreters) {
        const lists: { head: bigint; tid: number | null; running: bigint; tstate: bigint | null }[] = [];
        for (const t of interp.threads) {
          let running = 0n;
          try {
            const loop = s.mem.ptr(t.tstate + BigInt(a.tstateRunningLoop));
            if (loop !== 0n) running = s.mem.ptr(t.tstate + BigInt(a.tstateRunningTask));
          } catch (e) {
            if (isFatal(e)) throw e;
          }
          lists.push({ head: t.tstate + BigInt(a.tstateTasksHead), tid: t.tid, running, tstate: t.tstate });
        }
        lists.push({ head: interp.addr + BigInt(a.interpTasksHead), tid: null, running: 0n, tstate: null });
        for (const l of lists) {
          let listed: { tasks: bigint[]; error: InspectIssue | null } = { tasks: [], error: null };
          for (let attempt = 0; attempt < s.limits.attempts; attempt++) {
            try {
              listed = taskList(s, a, l.head, INSPECT_LIMITS.tasks - base.tasks.length);
            } catch (e) {
              if (isFatal(e)) throw e;
              listed = { tasks: [], error: issueOf(e) };
            }
            if (!listed.error || listed.error.code === 'TRUNCATED') break;
          }
          if (listed.error) {
            const where = l.tid === null ? `interpreter ${interp.id}` : `thread ${l.tid}`;
            errors.push({ ...listed.error, message: `task list of ${where}: ${listed.error.message}` });
          }
          for (const t of listed.tasks) addTask(t, l.tid, interp.id, t === l.running, l.tstate);
        }
      }
      // Plain futures that await tasks (gather's): follow them so the tree links through them.
      while (futureQueue.length && futures.size < INSPECT_LIMITS.tasks) {
        const f = futureQueue.shift()!;
        if (futures.has(f)) continue;
        const entry: AwaitingFuture = { id: hexId(f), awaitedBy: [] };
        futures.set(f, entry);
        try {
          entry.awaitedBy = reader.awaitedBy(f);
        } catch (e) {
          if (isFatal(e)) throw e;
          errors.push({ ...issueOf(e), message: `future ${entry.id}: ${issueOf(e).message}` });
        }
        for (const w of entry.awaitedBy) if (!w.task) futureQueue.push(BigInt(w.id));
      }
    } catch (e) {
      if (!isFatal(e)) throw e;
      errors.push(issueOf(e));
    }
    base.futures = [...futures.values()];
    base.bytesRead = s.mem.bytesRead;
    return finish(errors);
  } catch (e) {
    return finish([issueOf(e)], base.tasks.length ? 'partial' : 'failed');
  } finally {
    s.close();
  }
}
