/**
 * better-auth's own endpoints (sign-in, sign-out, session, OIDC callbacks). Sign-in is rate limited per
 * client IP + email before better-auth sees it (better-auth's built-in limiter only keys on IP + path).
 */
import { getAppContext } from '../../../../server/context';
import { errorResponse, toErrorResponse } from '../../../../server/http/handler';
import { checkLoginRate } from '../../../../server/http/login-limit';

async function auth(req: Request): Promise<Response> {
  const rt = getAppContext();
  try {
    if (req.method === 'POST' && new URL(req.url).pathname.endsWith('/sign-in/email')) {
      const limited = await checkLoginRate(rt, req);
      if (limited)
        return errorResponse(429, 'RATE_LIMITED', `too many sign-in attempts; retry in ${limited} s`);
    }
    const res = await rt.auth.handler(req);
    if (res.status >= 400 && !(res.headers.get('content-type') ?? '').includes('json')) {
      return errorResponse(
        res.status,
        res.status === 404 ? 'NOT_FOUND' : 'AUTH_ERROR',
        (await res.text()) || 'request refused',
      );
    }
    return res;
  } catch (err) {
    return toErrorResponse(err, rt);
  }
}

export const GET = auth;
export const POST = auth;
