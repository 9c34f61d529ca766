import { z } from 'zod';
import { Json } from './common';

/**
 * Outcome of one injection as the engine (packages/remote-exec) reports it. `succeeded` is only ever
 * produced when the harness inside the target said so.
 */
export const EngineStatus = z.enum([
  'succeeded',
  'failed',
  'pickup_timeout',
  'target_gone',
  'refused',
  'cancelled',
]);
export type EngineStatus = z.infer<typeof EngineStatus>;

/** Specific, actionable reasons. Anything not `succeeded` carries one. */
export const EngineErrorCode = z.enum([
  'USER_EXCEPTION',
  'TIME_BUDGET_EXCEEDED',
  'PICKUP_TIMEOUT',
  'TARGET_GONE',
  'REMOTE_DEBUG_DISABLED',
  'UNSUPPORTED_VERSION',
  'PERMISSION_DENIED',
  'NOT_PYTHON',
  'PENDING_CONFLICT',
  /** Something in the staging directory was not what the engine made (a link, FIFO, hard link, foreign owner, swap). */
  'STAGING_TAMPERED',
  /** The sys backend's tracer would run files a non-root user controls; the native backend needs none of them. */
  'UNTRUSTED_INTERPRETER',
  /** Stopped by a cancel (status `cancelled`). */
  'CANCELLED',
  'PATH_TOO_LONG',
  'THREAD_NOT_FOUND',
  'STAGING_FAILED',
  'HARNESS_ERROR',
  'INTERNAL',
]);
export type EngineErrorCode = z.infer<typeof EngineErrorCode>;

export const ThreadInfo = z.object({
  tid: z.number().int().nonnegative(),
  name: z.string().max(256).nullable().optional(),
});

export const ExecError = z.object({
  type: z.string().max(256),
  message: z.string().max(64 * 1024),
  traceback: z
    .string()
    .max(256 * 1024)
    .optional(),
});
export type ExecError = z.infer<typeof ExecError>;

export const ExecResult = z.object({
  status: EngineStatus,
  errorCode: EngineErrorCode.optional(),
  /** Operator-facing explanation for anything but success: what happened and what to do. */
  message: z.string().max(4096).optional(),
  output: z.string(),
  outputTruncated: z.boolean().optional(),
  /** How many bytes of output the cap cut (what was printed after it, and the part of the chunk it cut). */
  outputDroppedBytes: z.number().int().nonnegative().optional(),
  result: Json.optional(),
  error: ExecError.optional(),
  pickedUpAt: z.string().nullable().optional(),
  finishedAt: z.string().nullable().optional(),
  thread: ThreadInfo.nullable().optional(),
  backend: z.enum(['native', 'sys']).optional(),
  /**
   * The thread that picked the request up (reached a safe point and claimed the run): with thread auto, the first
   * armed thread to get there. `thread` is the one that ran the code (the same one for inline runs).
   */
  pickedUpBy: ThreadInfo.nullable().optional(),
  /** With wake: the thread the engine interrupted in a blocked system call, and that call. */
  woken: z
    .array(
      ThreadInfo.extend({
        syscall: z.string().max(64),
        /** The kernel would have restarted the call: it was made to return EINTR instead. */
        interrupted: z.boolean(),
      }),
    )
    .max(8)
    .optional(),
  /**
   * Set when the code could not be interrupted (blocked in C past its budget, or after a cancel): the thread
   * that may still be running it inside the target. Absent when the code stopped.
   */
  leftoverThread: ThreadInfo.nullable().optional(),
});
export type ExecResult = z.infer<typeof ExecResult>;

/**
 * The one hint for code that could not be interrupted (blocked in C past its budget, or after a cancel), shown
 * under the engine's headline ("… could not be interrupted … may still be running in thread …") wherever a
 * result is shown: it never says the code "was stopped".
 */
export function uninterruptedHint(thread: { tid: number; name?: string | null }): string {
  const where = thread.name ? `thread ${thread.name} (tid ${thread.tid})` : `thread tid ${thread.tid}`;
  return (
    `The code could not be interrupted (blocked in C code?) and may still be running in ${where} inside the ` +
    'target. It ends when that call returns; restart the process if it must stop now.'
  );
}

// The execution state machine lives in the one state table (states.ts); re-exported for existing importers.
export { ExecutionState, TERMINAL_EXECUTION_STATES, canTransition } from './states';
