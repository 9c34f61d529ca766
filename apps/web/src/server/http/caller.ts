/**
 * Who is calling an API route: a person by the session cookie, or a service account by `Authorization: Bearer
 * pyr_…` (the token wins when both are sent; a bearer header that is not a valid, live token is refused with its
 * own code — TOKEN_INVALID / TOKEN_EXPIRED / TOKEN_REVOKED — never silently downgraded to the cookie). Bearer
 * calls carry no ambient credential, so the cookie routes' Origin/CSRF checks do not apply to them.
 */
import { userActor, type Actor } from '../services/actor';
import { AppError } from '../services/app-error';
import type { ServiceActor } from '../services/service-accounts';
import type { SessionUser } from '../services/sessions';

export interface Caller {
  user: SessionUser;
  actor: Actor;
}

/** The bearer token of an Authorization header; null when there is none; throws on a malformed one. */
export function bearerOf(headers: Headers): string | null {
  const h = headers.get('authorization');
  if (h === null) return null;
  const m = /^Bearer +(\S+) *$/i.exec(h);
  if (!m?.[1]) throw new AppError('TOKEN_INVALID', 'the Authorization header is not `Bearer <token>`');
  return m[1];
}

/**
 * The session-shaped view of a service account (routes read `user` for its id and role). Its sign-in time is
 * the epoch: a token is never a recent sign-in, so nothing gated on freshness accepts it.
 */
export function tokenCaller(actor: ServiceActor): Caller {
  return {
    actor,
    user: {
      id: actor.id,
      email: `${actor.name}@service-account`,
      name: actor.name,
      role: actor.role,
      authenticatedAt: new Date(0),
      sessionId: `token:${actor.tokenId}`,
      mustChangePassword: false,
    },
  };
}

export async function authenticateCaller(
  req: Request,
  ports: {
    fromHeaders(headers: Headers): Promise<SessionUser | null>;
    fromToken(token: string): Promise<ServiceActor>;
  },
): Promise<Caller | null> {
  const token = bearerOf(req.headers);
  if (token !== null) return tokenCaller(await ports.fromToken(token));
  const user = await ports.fromHeaders(req.headers);
  return user ? { user, actor: userActor(user) } : null;
}
