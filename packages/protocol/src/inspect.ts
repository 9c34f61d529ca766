import { z } from 'zod';
import { SafeText } from './text';

/**
 * Inspection that runs no code in the target: every thread's Python stack and the asyncio task graph, read
 * from the target's memory from outside (packages/remote-exec `readStacks` / `readTasks`). The same shapes
 * are printed by `pyreach-exec stacks|tasks --json` and sent by the agent for an `inspect` job.
 *
 * Everything that came out of the target's memory (function and file names, task names, thread names) is
 * safe text (see ./text): the target controls those bytes.
 */

/** Bounds of a report: what a receiver accepts, and what the reader never exceeds. */
export const INSPECT_LIMITS = {
  threads: 4096,
  frames: 4096,
  tasks: 20_000,
  awaiters: 4096,
  interpreters: 256,
  errors: 64,
  /**
   * UTF-16 units of one function or file name. The reader keeps at most 4096 characters of a name (by default
   * 1024 of a function's, 4096 of a file's) and an escaped byte takes two units: this bound holds with room
   * for the "cut" note.
   */
  text: 16_384,
  /** UTF-16 units of a task or thread name (the reader keeps 256 characters of a task name). */
  name: 1024,
} as const;

/** Why something could not be read, or was read only in part. */
export const InspectIssueCode = z.enum([
  /** The process has no CPython runtime mapped. */
  'NOT_PYTHON',
  /** No ptrace-attach rights over the target (root, CAP_SYS_PTRACE or the target's own uid; Yama). */
  'PERMISSION_DENIED',
  /** A Python whose memory layout the reader does not know (only CPython 3.14 final releases are read). */
  'UNSUPPORTED_VERSION',
  'TARGET_GONE',
  /** No interpreter yet (starting) or any more (finalised). */
  'NO_INTERPRETER',
  /** An address the target gave could not be read (unmapped). */
  'READ_FAULT',
  /** An address the target gave lies outside the memory the reader may touch (see the README: file mappings other than CPython's own images are never read). */
  'OUT_OF_BOUNDS',
  /** Memory does not hold what it must (wrong type, impossible length, bad offsets): garbage or a hostile target. */
  'CORRUPT',
  /** A linked structure loops (frame chain, thread list, task list, coroutine chain). */
  'CYCLE',
  /** The structure kept changing while it was read, after the bounded number of retries. */
  'TORN',
  /** More than the reader's bound (frames, threads, tasks, string length): what is shown is cut. */
  'TRUNCATED',
  /** The reader's total byte budget for this report was used up. */
  'BUDGET_EXCEEDED',
  /** The reader's time budget for this report ran out. */
  'DEADLINE_EXCEEDED',
  /** asyncio's C module (`_asyncio`) and its debug offsets section are not loaded in the target. */
  'ASYNCIO_UNAVAILABLE',
  'INTERNAL',
]);
export type InspectIssueCode = z.infer<typeof InspectIssueCode>;

export const InspectIssue = z.object({
  code: InspectIssueCode,
  message: SafeText.max(4096),
});
export type InspectIssue = z.infer<typeof InspectIssue>;

/**
 * `complete`: everything was read; `partial`: some threads/tasks/frames carry an error (what could be read
 * is there); `failed`: nothing could be read (see `errors`).
 */
export const InspectStatus = z.enum(['complete', 'partial', 'failed']);
export type InspectStatus = z.infer<typeof InspectStatus>;

export const StackFrame = z.object({
  /** The code object's qualified name (`Class.method`, `outer.<locals>.inner`). */
  function: SafeText.max(INSPECT_LIMITS.text),
  file: SafeText.max(INSPECT_LIMITS.text),
  /** null: the instruction has no line (or the instruction pointer was outside the code). */
  line: z.number().int().nullable(),
});
export type StackFrame = z.infer<typeof StackFrame>;

/**
 * What a thread is doing, from /proc (stat state, syscall, wchan), looked at twice: before and after the
 * memory was read.
 */
export const ThreadRunState = z.object({
  /** running: on a CPU or runnable; blocked: sleeping in the kernel (in `syscall` when known). */
  status: z.enum(['running', 'blocked', 'stopped', 'exited', 'unknown']),
  /** The task's state letter from /proc/PID/task/TID/stat (R, S, D, T, t, Z, X, I, ...). */
  procState: z.string().max(1).nullable(),
  /** The system call it is blocked in (from /proc/PID/task/TID/syscall), or null when in none / unknown. */
  syscall: z
    .object({
      number: z.number().int().nonnegative(),
      /** Name for this host's architecture, null for a number the engine has no name for. */
      name: z.string().max(64).nullable(),
    })
    .nullable(),
  /** Kernel function it waits in (`/proc/PID/task/TID/wchan`), when the kernel tells. */
  wchan: SafeText.max(512).nullable(),
  /** Uninterruptible sleep (D): no signal will wake it. */
  uninterruptible: z.boolean(),
  /** The same status, state letter and syscall in both looks. */
  stable: z.boolean(),
});
export type ThreadRunState = z.infer<typeof ThreadRunState>;

export const StackThread = z.object({
  /** Native thread id as the target sees it (its own pid namespace): what `run --tid` takes. */
  tid: z.number().int().nonnegative(),
  /** The same thread's id in the reader's pid namespace (/proc/PID/task/...), null if it is gone. */
  hostTid: z.number().int().positive().nullable(),
  /**
   * Thread name: the kernel's `comm` of the thread, which CPython 3.14's `threading` sets to the Python name
   * (cut to 15 bytes); the main thread's is the program name. null when the thread is gone.
   */
  name: SafeText.max(64).nullable(),
  /** The interpreter's main thread (`threads_main`, else the thread whose id is the process's own pid). */
  main: z.boolean(),
  /** 0: the main interpreter; others: subinterpreters (one OS thread has a thread state in each it entered). */
  interpreterId: z.number().int().nonnegative(),
  /** Holds its interpreter's GIL right now (null: free-threaded build or unreadable). */
  holdsGil: z.boolean().nullable(),
  /** null when not asked for (`states: false`) or unreadable. */
  state: ThreadRunState.nullable(),
  /** Innermost first. */
  frames: z.array(StackFrame).max(INSPECT_LIMITS.frames),
  /** More frames than the reader's bound: the outermost ones are missing. */
  truncated: z.boolean(),
  /** Why this thread's stack is missing or incomplete (the frames before the problem are kept). */
  error: InspectIssue.nullable(),
});
export type StackThread = z.infer<typeof StackThread>;

export const InterpreterSummary = z.object({
  id: z.number().int().nonnegative(),
  threads: z.number().int().nonnegative(),
  /** `remote_debug` of this interpreter's config: whether `sys.remote_exec` would be honoured. */
  remoteDebugEnabled: z.boolean().nullable(),
});

const reportBase = {
  pid: z.number().int().positive(),
  /** The process's pid in its own namespace (differs in containers). */
  nsPid: z.number().int().positive().nullable(),
  pythonVersion: z.string().max(32).nullable(),
  status: InspectStatus,
  /** When the read started (ISO 8601) and how long it took. */
  readAt: z.string().max(64),
  durationMs: z.number().nonnegative(),
  /** Bytes read from the target's memory. */
  bytesRead: z.number().int().nonnegative(),
  /** Problems that concern the whole process (per-thread / per-task problems sit on the entry). */
  errors: z.array(InspectIssue).max(INSPECT_LIMITS.errors),
};

export const StacksReport = z.object({
  ...reportBase,
  /** Main interpreter's `remote_debug`: inspection works either way, injection needs it. */
  remoteDebugEnabled: z.boolean().nullable(),
  interpreters: z.array(InterpreterSummary).max(INSPECT_LIMITS.interpreters),
  /** Main interpreter first, its main thread first, then by age. */
  threads: z.array(StackThread).max(INSPECT_LIMITS.threads),
});
export type StacksReport = z.infer<typeof StacksReport>;

const TaskId = z.string().regex(/^0x[0-9a-f]{1,16}$/);

/** One task or future that awaits a task. */
export const TaskAwaiter = z.object({
  /** Address of the awaiting object: the task's `id()` inside the target. */
  id: TaskId,
  /** A Task (else a plain Future, e.g. the one `gather()` returns; see `futures`). */
  task: z.boolean(),
  name: SafeText.max(INSPECT_LIMITS.name).nullable(),
});
export type TaskAwaiter = z.infer<typeof TaskAwaiter>;

export const AsyncTask = z.object({
  id: TaskId,
  /** `Task.get_name()`: the given name, or `Task-N` for an unnamed task. */
  name: SafeText.max(INSPECT_LIMITS.name).nullable(),
  /** Native tid (target namespace) of the thread whose task list holds it; null: its thread has exited. */
  tid: z.number().int().nonnegative().nullable(),
  interpreterId: z.number().int().nonnegative(),
  /** The task its thread's event loop is running right now. */
  running: z.boolean(),
  /** Its coroutine chain, innermost first (what it awaits at the top). */
  stack: z.array(StackFrame).max(INSPECT_LIMITS.frames),
  truncated: z.boolean(),
  /** Who awaits this task. */
  awaitedBy: z.array(TaskAwaiter).max(INSPECT_LIMITS.awaiters),
  error: InspectIssue.nullable(),
});
export type AsyncTask = z.infer<typeof AsyncTask>;

/** A plain Future that awaits tasks (gather's) and is itself awaited: links the tree through it. */
export const AwaitingFuture = z.object({
  id: TaskId,
  awaitedBy: z.array(TaskAwaiter).max(INSPECT_LIMITS.awaiters),
});
export type AwaitingFuture = z.infer<typeof AwaitingFuture>;

export const TasksReport = z.object({
  ...reportBase,
  asyncio: z.object({
    /** asyncio's C module and its `AsyncioDebug` offsets were found in the target. */
    loaded: z.boolean(),
    /** The image that carries them (the `_asyncio` extension, or the interpreter when built in). */
    module: SafeText.max(4096).nullable(),
  }),
  tasks: z.array(AsyncTask).max(INSPECT_LIMITS.tasks),
  futures: z.array(AwaitingFuture).max(INSPECT_LIMITS.tasks),
});
export type TasksReport = z.infer<typeof TasksReport>;
