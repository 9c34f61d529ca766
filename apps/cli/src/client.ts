/**
 * The CLI's client of the control plane: every call goes through the protocol route table (method, path and
 * the response schema that parses the answer), with the token as `Authorization: Bearer`. Failures are the
 * server's one error shape, carried as ApiError with its code and HTTP status.
 */
import type { z } from 'zod';
import { ApiFailure, type ErrorCode } from '@pyreach/protocol/errors';
import { routes, type RouteName } from '@pyreach/protocol/routes';

type Routes = typeof routes;
type Input<S, K extends string> = S extends { [P in K]: infer T extends z.ZodType } ? z.input<T> : never;

export type CallInput<N extends RouteName> = ([Input<Routes[N], 'params'>] extends [never]
  ? { params?: undefined }
  : { params: Input<Routes[N], 'params'> }) &
  ([Input<Routes[N], 'query'>] extends [never]
    ? { query?: undefined }
    : { query?: Input<Routes[N], 'query'> }) &
  ([Input<Routes[N], 'body'>] extends [never] ? { body?: undefined } : { body: Input<Routes[N], 'body'> });

export type CallOutput<N extends RouteName> = Routes[N] extends { response: infer T extends z.ZodType }
  ? z.infer<T>
  : never;

export type JsonRoute = {
  [N in RouteName]: Routes[N] extends { response: z.ZodType } ? N : never;
}[RouteName];

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'NETWORK' | 'BAD_RESPONSE',
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export class Client {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  url(path: string, params?: Record<string, unknown>, query?: Record<string, unknown>): string {
    const p = path.replace(/\{(\w+)\}/g, (_m, k: string) => encodeURIComponent(String(params?.[k] ?? '')));
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {}))
      if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
    const s = qs.toString();
    return `${this.baseUrl.replace(/\/$/, '')}${p}${s ? `?${s}` : ''}`;
  }

  /** A raw request of a route (streams: audit export); throws ApiError unless the status is 2xx. */
  async raw(
    name: RouteName,
    input: { params?: Record<string, unknown>; query?: Record<string, unknown> } = {},
  ) {
    const spec = routes[name];
    let res: Response;
    try {
      res = await fetch(this.url(spec.path, input.params, input.query), {
        method: spec.method,
        headers: { authorization: `Bearer ${this.token}` },
      });
    } catch (err) {
      throw new ApiError(0, 'NETWORK', `cannot reach ${this.baseUrl}: ${(err as Error).message}`);
    }
    if (!res.ok) throw await failureOf(res, `${spec.method} ${spec.path}`);
    return res;
  }

  async call<N extends JsonRoute>(name: N, input: CallInput<N>): Promise<CallOutput<N>> {
    const spec = routes[name] as Routes[JsonRoute];
    const { params, query, body } = input as {
      params?: Record<string, unknown>;
      query?: Record<string, unknown>;
      body?: unknown;
    };
    let res: Response;
    try {
      res = await fetch(this.url(spec.path, params, query), {
        method: spec.method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw new ApiError(0, 'NETWORK', `cannot reach ${this.baseUrl}: ${(err as Error).message}`);
    }
    if (!res.ok) throw await failureOf(res, `${spec.method} ${spec.path}`);
    const parsed = spec.response.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success)
      throw new ApiError(res.status, 'BAD_RESPONSE', `${name}: the answer does not match the route table`);
    return parsed.data as CallOutput<N>;
  }
}

async function failureOf(res: Response, what: string): Promise<ApiError> {
  const f = ApiFailure.safeParse(await res.json().catch(() => undefined));
  if (!f.success) return new ApiError(res.status, 'BAD_RESPONSE', `${what} failed (${res.status})`);
  return new ApiError(res.status, f.data.error.code, f.data.error.message);
}
