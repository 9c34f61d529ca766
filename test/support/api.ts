/** A small HTTP client for the control plane's API that signs in like a browser (session cookie). */
import { SEED_PASSWORD } from './control-plane';

export interface ApiResult<T = Record<string, unknown>> {
  status: number;
  body: ({ ok: true } & T) | { ok: false; error: { code: string; message: string } };
  headers: Headers;
}

export class ApiClient {
  cookie: string | null = null;

  constructor(readonly baseUrl: string) {}

  static async signIn(baseUrl: string, email: string, password = SEED_PASSWORD): Promise<ApiClient> {
    const c = new ApiClient(baseUrl);
    const res = await c.signIn(email, password);
    if (res.status !== 200)
      throw new Error(`sign-in of ${email} failed: ${res.status} ${JSON.stringify(res.body)}`);
    return c;
  }

  async signIn(email: string, password: string): Promise<ApiResult> {
    const res = await this.request('POST', '/api/auth/sign-in/email', { email, password });
    const set = res.headers.getSetCookie().find((c) => c.includes('session_token='));
    if (set) this.cookie = set.split(';')[0]!;
    return res;
  }

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    opts: { raw?: string; headers?: Record<string, string> } = {},
  ): Promise<ApiResult<T>> {
    const headers: Record<string, string> = { origin: this.baseUrl, ...opts.headers };
    if (this.cookie) headers.cookie = this.cookie;
    let payload: string | undefined;
    if (opts.raw !== undefined) payload = opts.raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] ??= 'application/json';
    const res = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: payload,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { ok: false, error: { code: 'NOT_JSON', message: text.slice(0, 500) } };
    }
    return { status: res.status, body: parsed as ApiResult<T>['body'], headers: res.headers };
  }

  async text(path: string): Promise<{ status: number; text: string; headers: Headers }> {
    const res = await fetch(this.baseUrl + path, {
      headers: this.cookie ? { cookie: this.cookie } : {},
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, text: await res.text(), headers: res.headers };
  }

  get = <T = Record<string, unknown>>(path: string) => this.request<T>('GET', path);
  post = <T = Record<string, unknown>>(path: string, body?: unknown) =>
    this.request<T>('POST', path, body ?? {});
  patch = <T = Record<string, unknown>>(path: string, body?: unknown) =>
    this.request<T>('PATCH', path, body ?? {});
  del = <T = Record<string, unknown>>(path: string) => this.request<T>('DELETE', path);

  /** Asserts success and returns the body (with a readable failure). */
  async ok<T = Record<string, unknown>>(p: Promise<ApiResult<T>>): Promise<{ ok: true } & T> {
    const r = await p;
    if (!r.body.ok)
      throw new Error(`expected success, got ${r.status} ${r.body.error.code}: ${r.body.error.message}`);
    return r.body;
  }
}
