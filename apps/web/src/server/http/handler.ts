/**
 * The one wrapper every route handler goes through: authenticate (session cookie), check the role may do the
 * route's action, enforce the body size limit, parse params/query/body with zod, call the implementation,
 * answer JSON. Every failure has the shape { ok:false, error:{ code, message } } and a proper HTTP status.
 * Only *types* come from the server; live instances come from getAppContext() (see context.ts).
 */
import { z } from 'zod';
import { fail } from '@pyreach/protocol/common';
import { getAppContext } from '../context';
import type { Runtime } from '../runtime';
import type { RouteSpec } from './spec';
import { BodyTooLarge, readBodyText } from './body';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export interface SessionUser {
  id: string;
  email: string;
  name: string;
  role: string;
  /** When this session was created by a sign-in (the re-authentication clock). */
  authenticatedAt: Date;
  sessionId: string;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** JSON with bigint as decimal strings (audit sequence numbers) and no caching. */
export function jsonResponse(body: unknown, status = 200): Response {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return new Response(text, {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
  });
}

export function errorResponse(status: number, code: string, message: string, details?: unknown): Response {
  return Response.json(fail(code, message, details), { status, headers: { 'cache-control': 'no-store' } });
}

function describe(where: string, error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${where}${i.path.length ? `.${i.path.join('.')}` : ''}: ${i.message}`)
    .join('; ');
}

/** Maps anything thrown to the one error shape. AppError (services) carries code, status and a safe message. */
export function toErrorResponse(err: unknown, rt: Runtime | null): Response {
  if (err instanceof HttpError) return errorResponse(err.status, err.code, err.message);
  const e = err as {
    code?: unknown;
    status?: unknown;
    userMessage?: unknown;
    message?: unknown;
    details?: unknown;
  } | null;
  if (e && typeof e.code === 'string' && typeof e.status === 'number') {
    if (e.status >= 500) rt?.log.error({ err }, 'route failed');
    return errorResponse(e.status, e.code, String(e.userMessage ?? e.message ?? e.code));
  }
  if (err instanceof z.ZodError) return errorResponse(400, 'VALIDATION', describe('input', err));
  rt?.log.error({ err }, 'route failed');
  return errorResponse(500, 'INTERNAL', 'internal error');
}

export async function sessionUser(rt: Runtime, headers: Headers): Promise<SessionUser | null> {
  const s = await rt.auth.api.getSession({ headers });
  if (!s) return null;
  const user = s.user as typeof s.user & { role?: string | null; banned?: boolean | null };
  if (user.banned) return null;
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    role: user.role ?? 'viewer',
    authenticatedAt: new Date(s.session.createdAt),
    sessionId: s.session.id,
  };
}

export interface HandlerInput<S extends RouteSpec> {
  rt: Runtime;
  req: Request;
  user: S['auth'] extends 'public' ? SessionUser | null : SessionUser;
  params: S['params'] extends z.ZodType ? z.infer<S['params']> : Record<string, never>;
  query: S['query'] extends z.ZodType ? z.infer<S['query']> : Record<string, never>;
  body: S['body'] extends z.ZodType ? z.infer<S['body']> : undefined;
}

/** An implementation returns a JSON object (sent as { ok: true, ...value }) or a ready Response (streams). */
export type Impl<S extends RouteSpec> = (
  input: HandlerInput<S>,
) => Promise<Record<string, unknown> | Response>;

type NextCtx = { params: Promise<Record<string, string | string[]>> };

export function handle<S extends RouteSpec>(
  spec: S,
  impl: Impl<S>,
): (req: Request, ctx: NextCtx) => Promise<Response> {
  return async (req, ctx) => {
    let rt: Runtime | null = null;
    try {
      rt = getAppContext();
      if (rt.shuttingDown)
        return errorResponse(503, 'SHUTTING_DOWN', 'the server is shutting down; retry shortly');

      let user: SessionUser | null = null;
      if (spec.auth !== 'public' || spec.optionalSession) user = await sessionUser(rt, req.headers);
      if (spec.auth !== 'public') {
        if (!user) return errorResponse(401, 'UNAUTHENTICATED', 'sign in first');
        if (spec.auth !== 'session' && !rt.services.can(user.role, spec.auth.action)) {
          return errorResponse(403, 'FORBIDDEN', `role '${user.role}' may not ${spec.auth.action}`);
        }
      }

      const rawParams = await ctx.params;
      let params: unknown = {};
      if (spec.params) {
        const p = spec.params.safeParse(rawParams);
        if (!p.success) return errorResponse(400, 'VALIDATION', describe('path', p.error));
        params = p.data;
      }
      let query: unknown = {};
      if (spec.query) {
        const url = new URL(req.url);
        const q = spec.query.safeParse(Object.fromEntries(url.searchParams));
        if (!q.success) return errorResponse(400, 'VALIDATION', describe('query', q.error));
        query = q.data;
      }
      let body: unknown = undefined;
      if (spec.body) {
        let text: string;
        try {
          text = await readBodyText(req, spec.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
        } catch (err) {
          if (err instanceof BodyTooLarge) {
            return errorResponse(
              413,
              'PAYLOAD_TOO_LARGE',
              `request body is larger than ${spec.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES} bytes`,
            );
          }
          throw err;
        }
        let json: unknown;
        try {
          json = text === '' ? {} : JSON.parse(text);
        } catch {
          return errorResponse(400, 'VALIDATION', 'body: not valid JSON');
        }
        const b = spec.body.safeParse(json);
        if (!b.success) return errorResponse(400, 'VALIDATION', describe('body', b.error));
        body = b.data;
      }

      const out = await impl({ rt, req, user, params, query, body } as HandlerInput<S>);
      if (out instanceof Response) return out;
      return jsonResponse({ ok: true, ...out }, spec.status ?? 200);
    } catch (err) {
      return toErrorResponse(err, rt);
    }
  };
}
