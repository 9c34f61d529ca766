/**
 * The CLI's client of the control plane: every call goes through the protocol route table (method, path and
 * the response schema that parses the answer), with the token as `Authorization: Bearer`. Failures are the
 * server's one error shape, carried as ApiError with its code and HTTP status.
 */
import {
  ApiError,
  callRoute,
  failureOf,
  routeUrl,
  type CallInput,
  type CallOutput,
  type JsonRoute,
} from '@pyreach/protocol/client';
import { routes, type RouteName } from '@pyreach/protocol/routes';

export { ApiError, type CallInput, type CallOutput, type JsonRoute };

export class Client {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  url(path: string, params?: Record<string, unknown>, query?: Record<string, unknown>): string {
    return routeUrl(path, params, query, this.baseUrl);
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
    if (!res.ok)
      throw failureOf(res.status, await res.json().catch(() => undefined), `${spec.method} ${spec.path}`);
    return res;
  }

  call<N extends JsonRoute>(name: N, input: CallInput<N>): Promise<CallOutput<N>> {
    return callRoute(name, input, {
      baseUrl: this.baseUrl,
      headers: { authorization: `Bearer ${this.token}` },
    });
  }
}
