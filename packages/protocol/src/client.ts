/**
 * The one typed client of the HTTP API, for every caller (the dashboard's lib/client/call.ts, the `pyreach`
 * CLI). Its types come from the route table: `callRoute('getRequest', { params: { id } })` takes what that
 * route's schemas accept and returns what its response schema describes — and it *parses* every answer with
 * that schema: a response that does not match is an ApiError (BAD_RESPONSE), never a cast. Failures are the one
 * error shape ({ ok:false, error }) parsed as such. Browser-safe: fetch and zod only.
 */
import type { z } from 'zod';
import { ApiFailure, type ErrorCode } from './errors';
import { routes, type RouteName } from './routes';

type Routes = typeof routes;
type Input<S, K extends string> = S extends { [P in K]: infer T extends z.ZodType } ? z.input<T> : never;

/** What a route takes: path params, query and body, each only where the route has them. */
export type CallInput<N extends RouteName> = ([Input<Routes[N], 'params'>] extends [never]
  ? { params?: undefined }
  : { params: Input<Routes[N], 'params'> }) &
  ([Input<Routes[N], 'query'>] extends [never]
    ? { query?: undefined }
    : { query?: Input<Routes[N], 'query'> }) &
  ([Input<Routes[N], 'body'>] extends [never] ? { body?: undefined } : { body: Input<Routes[N], 'body'> });

/** What a route answers (after parsing with its response schema). */
export type CallOutput<N extends RouteName> = Routes[N] extends { response: infer T extends z.ZodType }
  ? z.infer<T>
  : never;

/** Routes the client can call: those answering JSON with a response shape (not streams or documents). */
export type JsonRoute = {
  [N in RouteName]: Routes[N] extends { response: z.ZodType } ? N : never;
}[RouteName];

/** Client-side failures beside the server's codes: unreachable, or an answer that is not what the table says. */
export type ClientErrorCode = ErrorCode | 'NETWORK' | 'BAD_RESPONSE';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ClientErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Origin to call (tests, scripts, the CLI); the browser calls its own origin. */
  baseUrl?: string;
  /** Headers every call carries (the CLI's `Authorization: Bearer`). */
  headers?: Record<string, string>;
  /** fetch's credentials and cache modes (the dashboard: same-origin cookies, never cached). */
  credentials?: 'same-origin' | 'include' | 'omit';
  cache?: 'no-store' | 'no-cache' | 'default';
  /** Called on 401 UNAUTHENTICATED before the error is thrown (the dashboard goes to the sign-in page). */
  onUnauthenticated?: () => void;
}

/** A route's URL: its path template filled (each value encoded) and the query's set values. */
export function routeUrl(
  template: string,
  params: Record<string, unknown> | undefined,
  query: Record<string, unknown> | undefined,
  baseUrl = '',
): string {
  return `${baseUrl.replace(/\/$/, '')}${pathOf(template, params)}${queryOf(query)}`;
}

function pathOf(template: string, params: Record<string, unknown> | undefined): string {
  return template.replace(/\{(\w+)\}/g, (_m, key: string) => {
    const v = params?.[key];
    if (v === undefined || v === null) throw new ApiError(0, 'BAD_RESPONSE', `missing path parameter ${key}`);
    return encodeURIComponent(String(v));
  });
}

function queryOf(query: Record<string, unknown> | undefined): string {
  if (!query) return '';
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  const s = qs.toString();
  return s ? `?${s}` : '';
}

const describe = (error: z.ZodError) =>
  error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
    .join('; ');

/** The ApiError a failed answer carries (its one error shape), or BAD_RESPONSE when it has none. */
export function failureOf(status: number, json: unknown, what: string): ApiError {
  const failure = ApiFailure.safeParse(json);
  if (!failure.success)
    return new ApiError(status, 'BAD_RESPONSE', `${what} failed (${status}) without an error body`);
  const { code, message, details } = failure.data.error;
  return new ApiError(status, code, message, details);
}

/** Calls one route of the table and returns its parsed answer; throws ApiError on any failure. */
export async function callRoute<N extends JsonRoute>(
  name: N,
  input: CallInput<N>,
  opts: CallOptions = {},
): Promise<CallOutput<N>> {
  const spec = routes[name] as (typeof routes)[JsonRoute];
  const { params, query, body } = input as {
    params?: Record<string, unknown>;
    query?: Record<string, unknown>;
    body?: unknown;
  };
  const url = routeUrl(spec.path, params, query, opts.baseUrl);
  let res: Response;
  try {
    res = await fetch(url, {
      method: spec.method,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.cache ? { cache: opts.cache } : {}),
      signal: opts.signal,
      headers: {
        ...opts.headers,
        accept: 'application/json',
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    const why = opts.baseUrl ? ` (${opts.baseUrl}: ${err instanceof Error ? err.message : String(err)})` : '';
    throw new ApiError(
      0,
      'NETWORK',
      `The server could not be reached${why}. Check your connection and retry.`,
    );
  }
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok || (json as { ok?: unknown } | undefined)?.ok !== true) {
    const failure = failureOf(res.status, json, `${spec.method} ${spec.path}`);
    if (res.status === 401 && failure.code === 'UNAUTHENTICATED') opts.onUnauthenticated?.();
    throw failure;
  }
  const parsed = spec.response.safeParse(json);
  if (!parsed.success)
    throw new ApiError(
      res.status,
      'BAD_RESPONSE',
      `${name}: the server's answer does not match its schema (${describe(parsed.error)})`,
      parsed.error.issues,
    );
  return parsed.data as CallOutput<N>;
}
