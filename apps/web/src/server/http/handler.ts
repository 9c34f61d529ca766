/**
 * The one wrapper every route handler goes through: authenticate (session cookie), check the role may do the
 * route's action, enforce the body size limit, parse params/query/body with the route table's zod schemas, make
 * the route's one service call, apply what it changed (the Publisher), answer JSON. Every failure is the one
 * error shape { ok:false, error:{ code, message } } with the status protocol's ErrorCode table gives it.
 */
import { z } from 'zod';
import { can } from '@pyreach/protocol/api';
import { httpStatusOf, type ApiFailure, type ErrorCode } from '@pyreach/protocol/errors';
import type { RouteSpec } from '@pyreach/protocol/routes';
import type { Actor } from '../services/actor';
import { isOutcome } from '../services/effects';
import { AppError, bodyOf, type Classified } from '../services/app-error';
import type { SessionUser } from '../services/sessions';
import { BodyTooLarge, readBodyText } from './body';
import { checkContentType, checkOrigin, findUnsafeValue, isStateChanging } from './boundary';
import { authenticateCaller, type Caller } from './caller';
import { httpPlane, type HttpPlane } from './plane';

export type { SessionUser };

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const NO_STORE = { 'cache-control': 'no-store' };

/** JSON with bigint as decimal strings (audit sequence numbers) and no caching. */
export function jsonResponse(body: unknown, status = 200): Response {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return new Response(text, {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...NO_STORE },
  });
}

/** The one error response: the code's status from protocol's table and the error's JSON form. */
export function errorResponse(code: ErrorCode, message: string, details?: unknown): Response {
  const body: ApiFailure = {
    ok: false,
    error: details === undefined ? { code, message } : { code, message, details },
  };
  return Response.json(body, { status: httpStatusOf(code), headers: NO_STORE });
}

function describe(where: string, error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${where}${i.path.length ? `.${i.path.join('.')}` : ''}: ${i.message}`)
    .join('; ');
}

/** Without a plane to ask: AppErrors as they are, anything else INTERNAL. */
const plainly = (err: unknown): Classified =>
  err instanceof AppError
    ? { error: err, expected: err.status < 500 }
    : { error: new AppError('INTERNAL', 'internal error'), expected: false };

/**
 * Anything thrown, as the one error response (unexpected errors are logged; their text never leaves). The
 * plane classifies (it knows the database's errors, which route modules must not import); see http/plane.ts.
 */
export function toErrorResponse(err: unknown, plane: Pick<HttpPlane, 'classify' | 'log'> | null): Response {
  if (err instanceof z.ZodError) return errorResponse('VALIDATION', describe('input', err));
  const { error, expected } = (plane?.classify ?? plainly)(err);
  if (!expected) plane?.log.error({ err }, 'route failed');
  const body = bodyOf(error);
  return errorResponse(body.code, body.message, body.details);
}

type Infer<T> = T extends z.ZodType ? z.infer<T> : never;

export interface HandlerInput<S extends RouteSpec> {
  services: HttpPlane['services'];
  plane: HttpPlane;
  req: Request;
  user: S['auth'] extends 'public' ? SessionUser | null : SessionUser;
  /** The audit actor for the signed-in person. */
  actor: S['auth'] extends 'public' ? Actor | null : Actor;
  params: S['params'] extends z.ZodType ? Infer<S['params']> : Record<string, never>;
  query: S['query'] extends z.ZodType ? Infer<S['query']> : Record<string, never>;
  body: S['body'] extends z.ZodType ? Infer<S['body']> : undefined;
}

/** The success body of a route: its response shape's input (the JSON it becomes), without `ok`. */
type Body<S extends RouteSpec> = S['response'] extends z.ZodType
  ? Omit<z.input<S['response']>, 'ok'> | JsonOf<Omit<z.input<S['response']>, 'ok'>>
  : Record<string, unknown>;

/** What a service returns before JSON: dates become ISO strings, bigints decimal strings. */
type JsonOf<T> = T extends string
  ? string | Date | bigint
  : T extends object
    ? { [K in keyof T]: JsonOf<T[K]> }
    : T;

/**
 * An implementation makes one service call and returns its answer: a JSON body (sent as { ok: true, ...body }),
 * a service's { result, effects } (the effects are published once the body is ready), or a ready Response
 * (streams, documents).
 */
export type Impl<S extends RouteSpec> = (
  input: HandlerInput<S>,
) => Promise<Body<S> | { result: Body<S>; effects: readonly unknown[] } | Response>;

type NextCtx = { params: Promise<Record<string, string | string[]>> };

export function handle<S extends RouteSpec>(
  spec: S,
  impl: Impl<S>,
): (req: Request, ctx: NextCtx) => Promise<Response> {
  return async (req, ctx) => {
    let plane: HttpPlane | null = null;
    let denied: Denied | null = null;
    try {
      plane = httpPlane();
      if (plane.isShuttingDown())
        return errorResponse('SHUTTING_DOWN', 'the server is shutting down; retry shortly');

      const services = plane.services;
      // The browser boundary (http/boundary.ts): a cookie-authenticated write must come from the public origin
      // with a JSON body. A bearer-token call carries no ambient credential (a page on another origin cannot
      // set Authorization without a CORS grant, which is never given, and a bad bearer is never downgraded to
      // the cookie: http/caller.ts), so for it only the body's type is checked.
      if (spec.auth !== 'public' && isStateChanging(req.method)) {
        const bearer = req.headers.has('authorization');
        const refusal =
          (bearer ? null : checkOrigin(req.headers, services.system.publicUrl)) ??
          checkContentType(req.headers, spec.body !== undefined);
        if (refusal) return errorResponse(refusal.code, refusal.message);
      }

      let caller: Caller | null = null;
      if (spec.auth !== 'public' || spec.optionalSession)
        caller = await authenticateCaller(req, {
          fromHeaders: (h) => services.sessions.fromHeaders(h),
          fromToken: (t) => services.serviceAccounts.authenticate(t),
        });
      const user = caller?.user ?? null;
      if (spec.auth !== 'public') {
        if (!caller || !user) return errorResponse('UNAUTHENTICATED', 'sign in first');
        denied = { actor: caller.actor, method: req.method, path: spec.path };
        if (user.mustChangePassword && spec.path !== '/api/me')
          return await refused(
            plane,
            denied,
            'PASSWORD_CHANGE_REQUIRED',
            'you signed in with a temporary password: change it first (POST /api/auth/change-password)',
          );
        if (
          spec.auth !== 'session' &&
          caller.actor.type === 'service' &&
          spec.auth.action === 'request:review'
        )
          return await refused(
            plane,
            denied,
            'PERSON_REQUIRED',
            'reviews need a person signed in recently; API tokens can never approve or reject',
          );
        if (spec.auth !== 'session' && !can(user.role, spec.auth.action)) {
          return await refused(plane, denied, 'FORBIDDEN', `role '${user.role}' may not ${spec.auth.action}`);
        }
      }

      const rawParams = await ctx.params;
      let params: unknown = {};
      if (spec.params) {
        const p = spec.params.safeParse(rawParams);
        if (!p.success) return errorResponse('VALIDATION', describe('path', p.error));
        params = p.data;
      }
      let query: unknown = {};
      if (spec.query) {
        const url = new URL(req.url);
        const raw = Object.fromEntries(url.searchParams);
        const unsafe = findUnsafeValue(raw, 'query');
        if (unsafe) return errorResponse(unsafe.code, unsafe.message);
        const q = spec.query.safeParse(raw);
        if (!q.success) return errorResponse('VALIDATION', describe('query', q.error));
        query = q.data;
      }
      let body: unknown = undefined;
      if (spec.body) {
        const limit = spec.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
        let text: string;
        try {
          text = await readBodyText(req, limit);
        } catch (err) {
          if (err instanceof BodyTooLarge)
            return errorResponse('PAYLOAD_TOO_LARGE', `request body is larger than ${limit} bytes`);
          throw err;
        }
        let json: unknown;
        try {
          json = text === '' ? {} : JSON.parse(text);
        } catch {
          return errorResponse('VALIDATION', 'body: not valid JSON');
        }
        const unsafe = findUnsafeValue(json, 'body');
        if (unsafe) return errorResponse(unsafe.code, unsafe.message);
        const b = spec.body.safeParse(json);
        if (!b.success) return errorResponse('VALIDATION', describe('body', b.error));
        body = b.data;
      }

      const actor = caller?.actor ?? null;
      const out = await impl({
        services: plane.services,
        plane,
        req,
        user,
        actor,
        params,
        query,
        body,
      } as HandlerInput<S>);
      if (out instanceof Response) return out;
      if (isOutcome(out)) {
        const response = jsonResponse({ ok: true, ...(out.result as object) }, spec.status ?? 200);
        plane.publish(out.effects);
        return response;
      }
      return jsonResponse({ ok: true, ...(out as object) }, spec.status ?? 200);
    } catch (err) {
      const response = toErrorResponse(err, plane);
      if (plane && denied && AUDITED_DENIALS.has(bodyOf(plane.classify(err).error).code))
        await auditDenied(plane, denied, bodyOf(plane.classify(err).error));
      return response;
    }
  };
}

/** Refusals of a signed-in person that the audit trail keeps: who tried what, and why it was refused. */
const AUDITED_DENIALS = new Set<ErrorCode>([
  'FORBIDDEN',
  'SELF_APPROVAL',
  'STALE_AUTH',
  'POLICY_DENIED',
  'CROSS_ORIGIN',
  'PASSWORD_CHANGE_REQUIRED',
  'PERSON_REQUIRED',
]);

interface Denied {
  actor: Actor;
  method: string;
  path: string;
}

/** Best effort: a failing audit write is logged and never turns the refusal into a 500. */
async function auditDenied(plane: HttpPlane, d: Denied, e: { code: string; message: string }): Promise<void> {
  try {
    await plane.services.users.recordDenied(d.actor, { ...d, code: e.code, message: e.message });
  } catch (err) {
    plane.log.error({ err, code: e.code }, 'could not audit a denied action');
  }
}

async function refused(plane: HttpPlane, d: Denied, code: ErrorCode, message: string): Promise<Response> {
  await auditDenied(plane, d, { code, message });
  return errorResponse(code, message);
}
