/**
 * Every error code the control plane answers with (HTTP bodies, /agents acks and connect errors, /ui acks),
 * its HTTP status, and whether the same message may succeed when sent again later. Browser-safe: zod only.
 * The server's one error type (AppError, apps/web) carries one of these; the browser client and the agent
 * read them from here instead of guessing.
 */
import { z } from 'zod';

interface ErrorInfo {
  status: number;
  /** Re-sending the same message later can succeed (the agent's outbox retries these). */
  retryable: boolean;
}

const ERRORS = {
  VALIDATION: { status: 400, retryable: false },
  UNAUTHENTICATED: { status: 401, retryable: true },
  STALE_AUTH: { status: 401, retryable: false },
  FORBIDDEN: { status: 403, retryable: false },
  SELF_APPROVAL: { status: 403, retryable: false },
  POLICY_DENIED: { status: 403, retryable: false },
  /** A cookie-authenticated state-changing call whose Origin / Sec-Fetch-Site is not PUBLIC_URL. */
  CROSS_ORIGIN: { status: 403, retryable: false },
  /** Signed in with a temporary password: change it (POST /api/auth/change-password) first. */
  PASSWORD_CHANGE_REQUIRED: { status: 403, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  METHOD_NOT_ALLOWED: { status: 405, retryable: false },
  CONFLICT: { status: 409, retryable: false },
  ALREADY_VOTED: { status: 409, retryable: false },
  INVALID_STATE: { status: 409, retryable: false },
  OUT_OF_ORDER: { status: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  /**
   * The database refused the data itself (a value it cannot hold: a NUL or an invalid sequence that slipped
   * past validation, a value past a column's limit). Not the connection: sending the same message again can
   * never succeed, so an agent's report answered with it is final (REPORT_REFUSED on the agent).
   */
  UNSTORABLE: { status: 422, retryable: false },
  /**
   * Filing or editing a request whose every target is doomed by its pre-flight (exited, remote debugging off,
   * the agent's local policy forbids it): details.targets names each one and why (packages/protocol/preflight).
   */
  ALL_TARGETS_DOOMED: { status: 422, retryable: false },
  /** A body that is not application/json. */
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  RATE_LIMITED: { status: 429, retryable: true },
  // API tokens (service accounts): a bearer token that is not one of ours (or a wrong secret), one past its
  // expiry, one revoked; and an action only a person with a recent sign-in may take (reviews).
  TOKEN_INVALID: { status: 401, retryable: false },
  TOKEN_EXPIRED: { status: 401, retryable: false },
  TOKEN_REVOKED: { status: 401, retryable: false },
  PERSON_REQUIRED: { status: 403, retryable: false },
  // Enrolment with a join token the control plane knows but will not honour (an unknown token stays
  // UNAUTHENTICATED): past its expiry, revoked by an admin, every use taken, or the host name the agent reports
  // outside the token's host pattern. None succeeds when sent again: a crash-looping agent says why and stops.
  JOIN_TOKEN_EXPIRED: { status: 401, retryable: false },
  JOIN_TOKEN_REVOKED: { status: 401, retryable: false },
  JOIN_TOKEN_USED_UP: { status: 403, retryable: false },
  JOIN_TOKEN_HOST_MISMATCH: { status: 403, retryable: false },
  /** E-mail + password sign-in is switched off on this deployment (PYREACH_PASSWORD_SIGNIN=off): use SSO. */
  PASSWORD_SIGNIN_DISABLED: { status: 403, retryable: false },
  /** better-auth refused a sign-in call without saying more. */
  AUTH_ERROR: { status: 400, retryable: false },
  INTERNAL: { status: 500, retryable: true },
  SHUTTING_DOWN: { status: 503, retryable: true },
  /** Readiness: a dependency of this replica (the database, Redis) does not answer; details name it. */
  NOT_READY: { status: 503, retryable: true },
  // The /agents namespace (AgentErrorCode in agent.ts is this subset).
  UNKNOWN_AGENT: { status: 401, retryable: false },
  AGENT_REVOKED: { status: 403, retryable: false },
  BAD_NONCE: { status: 401, retryable: false },
  NONCE_EXPIRED: { status: 401, retryable: false },
  NONCE_REPLAYED: { status: 401, retryable: false },
  BAD_SIGNATURE: { status: 401, retryable: false },
  AUTH_TIMEOUT: { status: 401, retryable: false },
  UNKNOWN_EVENT: { status: 400, retryable: false },
  UNSUPPORTED_VERSION: { status: 400, retryable: false },
  // Never sent: how the dispatcher records an agent that did not answer a dispatch (the job may have arrived).
  AGENT_OFFLINE: { status: 503, retryable: true },
  ACK_TIMEOUT: { status: 504, retryable: true },
  BAD_ACK: { status: 502, retryable: true },
} as const satisfies Record<string, ErrorInfo>;

export type ErrorCode = keyof typeof ERRORS;
export const ErrorCode = z.enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]]);

export function httpStatusOf(code: ErrorCode): number {
  return ERRORS[code].status;
}

export function isRetryable(code: string): boolean {
  return (ERRORS as Record<string, ErrorInfo>)[code]?.retryable ?? false;
}

/** The error's JSON form, as the control plane sends it. */
export const ApiErrorBody = z.object({
  code: ErrorCode,
  /** Safe to show to whoever made the call. */
  message: z.string(),
  details: z.unknown().optional(),
});
export type ApiErrorBody = z.infer<typeof ApiErrorBody>;

/** `{ ok: false, error }`: every failed HTTP response and socket ack. */
export const ApiFailure = z.object({ ok: z.literal(false), error: ApiErrorBody });
export type ApiFailure = z.infer<typeof ApiFailure>;
