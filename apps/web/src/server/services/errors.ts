import { type Failure } from '@pyreach/protocol/common';
import type { ApiErrorBody } from '@pyreach/protocol/errors';
import { Prisma } from '@pyreach/db';
import { AppError, bodyOf, type Classified } from './app-error';

export { AppError, parseInput, type ErrorCode } from './app-error';

/** True when `err` is Prisma's unique-constraint violation (P2002), whichever driver adapter raised it. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/**
 * Anything thrown, as the AppError it stands for: AppErrors as they are; a unique violation that escaped a
 * service is CONFLICT; everything else is INTERNAL with a generic message (`expected` is false: log it).
 */
export function asAppError(err: unknown): Classified {
  if (err instanceof AppError) return { error: err, expected: err.status < 500 };
  if (isUniqueViolation(err))
    return { error: new AppError('CONFLICT', 'this conflicts with an existing record'), expected: true };
  return { error: new AppError('INTERNAL', 'internal error', { cause: err }), expected: false };
}

/** The error's JSON form (HTTP bodies, socket acks and connect errors): code, user-safe message, details. */
export function errorBody(err: unknown): ApiErrorBody {
  return bodyOf(asAppError(err).error);
}

/** `{ ok: false, error }` for a socket ack. */
export function toFailure(err: unknown): Failure {
  return { ok: false, error: errorBody(err) };
}

/** The HTTP status for anything thrown. */
export function httpStatus(err: unknown): number {
  return asAppError(err).error.status;
}
