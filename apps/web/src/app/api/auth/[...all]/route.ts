/**
 * better-auth's own endpoints (sign-in, sign-out, session, OIDC callbacks). Sign-in is rate limited per
 * client IP + email before better-auth sees it (better-auth's built-in limiter only keys on IP + path).
 */
import { errorResponse, toErrorResponse } from '../../../../server/http/handler';
import { CLIENT_IP_HEADER, httpPlane } from '../../../../server/http/plane';

async function signInEmail(req: Request): Promise<string> {
  try {
    const body = (await req.clone().json()) as { email?: unknown };
    if (typeof body.email === 'string') return body.email.trim().toLowerCase().slice(0, 320);
  } catch {
    // Malformed bodies are refused by better-auth; they still count against the IP.
  }
  return '';
}

async function auth(req: Request): Promise<Response> {
  const plane = httpPlane();
  try {
    if (!plane.signIn.password && new URL(req.url).pathname.endsWith('/sign-in/email'))
      return errorResponse(
        'PASSWORD_SIGNIN_DISABLED',
        `password sign-in is switched off here; sign in with ${plane.signIn.sso?.name ?? 'SSO'}`,
      );
    if (req.method === 'POST' && new URL(req.url).pathname.endsWith('/sign-in/email')) {
      const ip = req.headers.get(CLIENT_IP_HEADER) ?? 'unknown';
      const limited = await plane.services.sessions.checkLoginRate({ ip, email: await signInEmail(req) });
      if (limited) return errorResponse('RATE_LIMITED', `too many sign-in attempts; retry in ${limited} s`);
    }
    const path = new URL(req.url).pathname;
    const ip = req.headers.get(CLIENT_IP_HEADER) ?? null;
    // Who is signing out or changing a password: read before the auth library ends or replaces the session.
    const before =
      req.method === 'POST' && (path.endsWith('/sign-out') || path.endsWith('/change-password'))
        ? await plane.services.sessions.fromHeaders(req.headers)
        : null;
    const email = req.method === 'POST' && path.endsWith('/sign-in/email') ? await signInEmail(req) : null;
    const res = await plane.authHandler(req);
    if (email !== null && res.status >= 400 && res.status !== 429)
      await plane.services.users.recordAuthEvent({ kind: 'sign_in_failed', email, ip, status: res.status });
    if (before && res.ok && path.endsWith('/sign-out')) {
      await plane.services.users.recordAuthEvent({ kind: 'sign_out', user: before, ip });
      plane.publish([
        { kind: 'sessions-closed', userId: before.id, sessionId: before.sessionId, reason: 'signed out' },
      ]);
    }
    if (before && res.ok && path.endsWith('/change-password'))
      await plane.services.users.passwordChanged(before);
    if (res.status >= 400 && !(res.headers.get('content-type') ?? '').includes('json')) {
      // better-auth's plain-text refusals, in the one error shape (the status stays its own).
      const code = res.status === 404 ? 'NOT_FOUND' : 'AUTH_ERROR';
      return Response.json(
        { ok: false, error: { code, message: (await res.text()) || 'request refused' } },
        { status: res.status, headers: { 'cache-control': 'no-store' } },
      );
    }
    return res;
  } catch (err) {
    return toErrorResponse(err, plane);
  }
}

export const GET = auth;
export const POST = auth;
