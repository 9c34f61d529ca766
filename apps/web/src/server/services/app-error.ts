/**
 * The one error type of the control plane, free of the database client: route modules (bundled by Next.js on
 * their own) import it through the HTTP handler. The database-aware reading of anything thrown is errors.ts.
 */
import { z } from 'zod';
import { httpStatusOf, type ApiErrorBody, type ErrorCode } from '@pyreach/protocol/errors';

export type { ErrorCode };

/**
 * The one error type of the control plane. `message` is for logs (may name ids and internals);
 * `userMessage` is safe to show to whoever made the call and is what {@link toFailure} sends. The code is one
 * of protocol's ErrorCode, whose table gives the HTTP status.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly userMessage: string;
  readonly details?: unknown;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { userMessage?: string; details?: unknown; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.userMessage = opts.userMessage ?? message;
    if (opts.details !== undefined) this.details = opts.details;
  }

  get status(): number {
    return httpStatusOf(this.code);
  }
}

/** The error's JSON form (HTTP bodies, socket acks and connect errors): code, user-safe message, details. */
export function bodyOf(error: AppError): ApiErrorBody {
  return error.details === undefined
    ? { code: error.code, message: error.userMessage }
    : { code: error.code, message: error.userMessage, details: error.details };
}

/** What anything thrown stands for; `expected` is false for what must be logged (an INTERNAL error). */
export interface Classified {
  error: AppError;
  expected: boolean;
}

/** Parses a service's input with its protocol schema; a mismatch is VALIDATION naming the fields. */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(input);
  if (!r.success)
    throw new AppError('VALIDATION', `invalid ${what}: ${z.prettifyError(r.error)}`, {
      details: r.error.issues,
    });
  return r.data;
}
