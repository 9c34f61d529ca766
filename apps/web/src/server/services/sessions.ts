/** Who is calling: the signed-in person behind a session, their freshness, and the sign-in throttle. */
import { isRole, type Role } from '@pyreach/protocol/api';
import type { PrismaClient } from '@pyreach/db';

export interface SessionUser {
  id: string;
  email: string;
  name: string;
  role: Role;
  /** When this session was created by a sign-in (the re-authentication clock). */
  authenticatedAt: Date;
  sessionId: string;
  /** Signed in with an admin-set temporary password: only /api/me and change-password until it is changed. */
  mustChangePassword: boolean;
}

/** What the auth library tells about a session (better-auth's getSession, narrowed to what we read). */
export interface SessionRecord {
  user: {
    id: string;
    email: string;
    name: string;
    role?: string | null;
    banned?: boolean | null;
    mustChangePassword?: boolean | null;
  };
  session: { id: string; createdAt: Date | string };
}

/** The person behind a session; null when there is none or the user is banned. Unknown roles read as viewer. */
export function sessionUserOf(s: SessionRecord | null): SessionUser | null {
  if (!s || s.user.banned) return null;
  return {
    id: s.user.id,
    email: s.user.email,
    name: s.user.name,
    role: isRole(s.user.role) ? s.user.role : 'viewer',
    authenticatedAt: new Date(s.session.createdAt),
    sessionId: s.session.id,
    mustChangePassword: s.user.mustChangePassword === true,
  };
}

/** GET /api/me: the person, and until when their sign-in counts as recent (approving needs that). */
export function describeSession(user: SessionUser, reauthMinutes: number, now: Date = new Date()) {
  const freshUntil = new Date(user.authenticatedAt.getTime() + reauthMinutes * 60_000);
  return {
    user: { id: user.id, email: user.email, name: user.name, role: user.role },
    mustChangePassword: user.mustChangePassword,
    authenticatedAt: user.authenticatedAt.toISOString(),
    freshUntil: freshUntil.toISOString(),
    fresh: freshUntil.getTime() > now.getTime(),
  };
}

/**
 * How this person proves it is them again before a vote: their password, or a fresh sign-in at the IdP
 * (prompt=login, max_age=0) when they have an SSO identity and no password they may use here.
 */
export async function reauthMethod(
  db: PrismaClient,
  userId: string,
  signIn: { password: boolean; ssoProviderId: string | null },
): Promise<'password' | 'sso'> {
  if (!signIn.ssoProviderId) return 'password';
  const accounts = await db.account.findMany({ where: { userId }, select: { providerId: true } });
  const sso = accounts.some((a) => a.providerId === signIn.ssoProviderId);
  const password = signIn.password && accounts.some((a) => a.providerId === 'credential');
  return sso && !password ? 'sso' : 'password';
}

const WINDOW_MS = 60_000;

/**
 * Sign-in throttle per client IP + email, in the shared rate_limit table (so it holds across replicas).
 * Counts this attempt; returns the seconds to wait when the caller is over `limit` per minute, or 0.
 */
export async function checkLoginRate(
  db: PrismaClient,
  who: { ip: string; email: string },
  limit: number,
  now: number = Date.now(),
): Promise<number> {
  const key = `signin:${who.ip}:${who.email}`;
  // One statement: reset the window when it passed, else count up. Atomic on both databases.
  const rows = await db.$queryRaw<{ count: number; lastRequest: bigint }[]>`
    INSERT INTO rate_limit (id, key, count, "lastRequest") VALUES (${key}, ${key}, 1, ${BigInt(now)})
    ON CONFLICT (key) DO UPDATE SET
      count = CASE WHEN rate_limit."lastRequest" < ${BigInt(now - WINDOW_MS)} THEN 1 ELSE rate_limit.count + 1 END,
      "lastRequest" = CASE WHEN rate_limit."lastRequest" < ${BigInt(now - WINDOW_MS)} THEN ${BigInt(now)} ELSE rate_limit."lastRequest" END
    RETURNING count, "lastRequest"`;
  const row = rows[0];
  if (!row || row.count <= limit) return 0;
  return Math.max(1, Math.ceil((Number(row.lastRequest) + WINDOW_MS - now) / 1000));
}
