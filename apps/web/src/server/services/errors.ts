import { fail, type Failure } from '@pyreach/protocol/common';
import { Prisma } from '@pyreach/db';

/** Every expected failure of the control plane, as it crosses the wire (HTTP bodies, socket acks). */
export type ErrorCode =
  | 'VALIDATION'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'SELF_APPROVAL'
  | 'ALREADY_VOTED'
  | 'STALE_AUTH'
  | 'POLICY_DENIED'
  | 'INVALID_STATE'
  | 'OUT_OF_ORDER'
  | 'RATE_LIMITED'
  | 'PAYLOAD_TOO_LARGE'
  | 'INTERNAL';

/** HTTP status for each code. */
export const ERROR_STATUS: Record<ErrorCode, number> = {
  VALIDATION: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  SELF_APPROVAL: 403,
  ALREADY_VOTED: 409,
  STALE_AUTH: 401,
  POLICY_DENIED: 403,
  INVALID_STATE: 409,
  OUT_OF_ORDER: 409,
  RATE_LIMITED: 429,
  PAYLOAD_TOO_LARGE: 413,
  INTERNAL: 500,
};

/**
 * The one error type of the control plane. `message` is for logs (may name ids and internals);
 * `userMessage` is safe to show to whoever made the call and is what {@link toFailure} sends.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
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
    this.status = ERROR_STATUS[code];
    this.userMessage = opts.userMessage ?? message;
    if (opts.details !== undefined) this.details = opts.details;
  }
}

/** True when `err` is Prisma's unique-constraint violation (P2002), whichever driver adapter raised it. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/**
 * Converts anything thrown into protocol's `Failure`. AppErrors keep their code and user message; a unique
 * violation that escaped a service becomes CONFLICT; everything else is INTERNAL with a generic message (the
 * caller logs the original).
 */
export function toFailure(err: unknown): Failure {
  if (err instanceof AppError) return fail(err.code, err.userMessage, err.details);
  if (isUniqueViolation(err)) return fail('CONFLICT', 'this conflicts with an existing record');
  return fail('INTERNAL', 'internal error');
}

/** HTTP status for anything thrown (500 unless it is an AppError or a unique violation). */
export function statusOf(err: unknown): number {
  if (err instanceof AppError) return err.status;
  if (isUniqueViolation(err)) return 409;
  return 500;
}
