import { z } from 'zod';
import { type Failure } from '@pyreach/protocol/common';
import { httpStatusOf, type ApiErrorBody, type ErrorCode } from '@pyreach/protocol/errors';
import { Prisma } from '@pyreach/db';

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

/** True when `err` is Prisma's unique-constraint violation (P2002), whichever driver adapter raised it. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/**
 * Anything thrown, as the AppError it stands for: AppErrors as they are; a unique violation that escaped a
 * service is CONFLICT; everything else is INTERNAL with a generic message (`expected` is false: log it).
 */
export function asAppError(err: unknown): { error: AppError; expected: boolean } {
  if (err instanceof AppError) return { error: err, expected: err.status < 500 };
  if (isUniqueViolation(err))
    return { error: new AppError('CONFLICT', 'this conflicts with an existing record'), expected: true };
  return { error: new AppError('INTERNAL', 'internal error', { cause: err }), expected: false };
}

/** The error's JSON form (HTTP bodies, socket acks and connect errors): code, user-safe message, details. */
export function errorBody(err: unknown): ApiErrorBody {
  const { error } = asAppError(err);
  return error.details === undefined
    ? { code: error.code, message: error.userMessage }
    : { code: error.code, message: error.userMessage, details: error.details };
}

/** `{ ok: false, error }` for a socket ack. */
export function toFailure(err: unknown): Failure {
  return { ok: false, error: errorBody(err) };
}

/** The HTTP status for anything thrown. */
export function httpStatus(err: unknown): number {
  return asAppError(err).error.status;
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
