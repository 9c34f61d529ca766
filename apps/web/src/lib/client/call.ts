/**
 * The browser's typed client of the HTTP API: protocol's one client (`@pyreach/protocol/client`) calling the
 * page's own origin with its session cookie, never cached. No React here (the hooks are in api.ts), so it runs
 * and is tested in Node as it runs in the browser.
 */
import {
  callRoute,
  type CallInput,
  type CallOptions,
  type CallOutput,
  type JsonRoute,
} from '@pyreach/protocol/client';

export {
  ApiError,
  type CallInput,
  type CallOptions,
  type CallOutput,
  type ClientErrorCode,
  type JsonRoute,
} from '@pyreach/protocol/client';

/** Calls one route of the table and returns its parsed answer; throws ApiError on any failure. */
export function call<N extends JsonRoute>(
  name: N,
  input: CallInput<N>,
  opts: CallOptions = {},
): Promise<CallOutput<N>> {
  return callRoute(name, input, { credentials: 'same-origin', cache: 'no-store', ...opts });
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return typeof e === 'string' ? e : 'Unexpected error';
}
