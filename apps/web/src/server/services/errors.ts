import { type Failure } from '@pyreach/protocol/common';
import type { ApiErrorBody } from '@pyreach/protocol/errors';
import { Prisma } from '@pyreach/db';
import { AppError, bodyOf, type Classified } from './app-error';

export { AppError, parseInput, type ErrorCode } from './app-error';

/** True when `err` is Prisma's unique-constraint violation (P2002), whichever driver adapter raised it. */
export function isUniqueViolation(err: unknown): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002';
}

/** The SQLSTATE PostgreSQL (or PGlite) answered with, as the driver adapter passes it through Prisma. */
export function sqlStateOf(err: unknown): string | null {
  if (!(err instanceof Prisma.PrismaClientKnownRequestError)) return null;
  const cause = (err.meta as { driverAdapterError?: { cause?: { originalCode?: unknown; code?: unknown } } })
    ?.driverAdapterError?.cause;
  const code = cause?.originalCode ?? cause?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

/** Prisma's own codes for a value the column cannot hold (too long, out of range). */
const PRISMA_VALUE_REFUSED = new Set(['P2000', 'P2020', 'P2033']);

/**
 * True when the database refused the data itself, not the connection or the moment: SQLSTATE class 22 (data
 * exception: a NUL, an invalid byte sequence, an untranslatable character, a value out of range) or 54 (a
 * program limit such as a value too large), or Prisma's code for a value its column cannot hold. Sending the
 * same data again can never succeed, so it must not be answered with a retryable INTERNAL.
 */
export function isDataRefusal(err: unknown): boolean {
  if (err instanceof Prisma.PrismaClientKnownRequestError && PRISMA_VALUE_REFUSED.has(err.code)) return true;
  const state = sqlStateOf(err);
  return state !== null && (state.startsWith('22') || state.startsWith('54'));
}

/**
 * Anything thrown, as the AppError it stands for: AppErrors as they are; a unique violation that escaped a
 * service is CONFLICT; data the database refused is UNSTORABLE (final: logged, since validation should have
 * caught it, so its callers log it); everything else is INTERNAL with a generic message (`expected` is false: log it).
 */
export function asAppError(err: unknown): Classified {
  if (err instanceof AppError) return { error: err, expected: err.status < 500 };
  if (isUniqueViolation(err))
    return { error: new AppError('CONFLICT', 'this conflicts with an existing record'), expected: true };
  if (isDataRefusal(err))
    return {
      error: new AppError(
        'UNSTORABLE',
        `the database refused the data (SQLSTATE ${sqlStateOf(err) ?? '?'})`,
        {
          cause: err,
          userMessage:
            `the database refused this data (SQLSTATE ${sqlStateOf(err) ?? 'unknown'}); ` +
            'it was not applied, and sending it again cannot succeed',
        },
      ),
      expected: true,
    };
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
