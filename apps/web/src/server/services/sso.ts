/**
 * Single sign-on: which role the identity provider's claims give a person, and applying it at sign-in. The IdP
 * is the source of a role only when a role map is configured (PYREACH_OIDC_ROLE_MAP); then every SSO sign-in
 * sets it, audited as `user.role.set` with `source: 'idp'`, and the person's open /ui sockets are closed (they
 * carry the old role and reconnect with the new one).
 */
import { ROLES, Role } from '@pyreach/protocol/api';
import type { PrismaClient } from '@pyreach/db';
import type { Actor } from './actor';
import { appendAudit } from './audit';
import { outcome, type Outcome } from './effects';

/** `{"<claim>": {"<value>": "<role>"}}` (parsed by env.ts). */
export type RoleMap = Record<string, Record<string, Role>>;

export interface IdpRoleConfig {
  providerId: string;
  roleMap: RoleMap;
  defaultRole: Role;
}

/**
 * The highest role any mapped claim value gives, else the default. A claim may be a string or a list of strings
 * (`groups`); other types match nothing. Which claim values matched is returned for the audit.
 */
export function roleFromClaims(
  cfg: Pick<IdpRoleConfig, 'roleMap' | 'defaultRole'>,
  claims: Record<string, unknown>,
): { role: Role; matched: string[] } {
  let best = -1;
  const matched: string[] = [];
  for (const [claim, values] of Object.entries(cfg.roleMap)) {
    const raw = claims[claim];
    const have =
      typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((v) => typeof v === 'string') : [];
    for (const v of have) {
      const role = Object.hasOwn(values, v) ? values[v] : undefined;
      if (!role) continue;
      matched.push(`${claim}=${v}`);
      best = Math.max(best, ROLES.indexOf(role));
    }
  }
  return { role: best >= 0 ? ROLES[best]! : cfg.defaultRole, matched };
}

/**
 * Applies the role the IdP's claims give `userId` (called in the sign-in that carried them). No change: no
 * audit, no effects. The last admin is never demoted by a claim (the same rule as an admin's change): the
 * role stays, and the refusal is audited so the mismatch is visible.
 */
export async function syncIdpRole(
  db: PrismaClient,
  cfg: IdpRoleConfig,
  userId: string,
  claims: Record<string, unknown>,
): Promise<Outcome<{ role: Role; changed: boolean }>> {
  const { role, matched } = roleFromClaims(cfg, claims);
  const actor: Actor = { type: 'system', name: `idp:${cfg.providerId}` };
  return db.$transaction(async (tx) => {
    const admins = await tx.$queryRawUnsafe<{ id: string }[]>(
      `SELECT id FROM "user" WHERE role = 'admin' AND NOT banned ORDER BY id FOR UPDATE`,
    );
    const user = await tx.user.findUnique({ where: { id: userId }, select: { role: true, email: true } });
    const from = Role.catch('viewer').parse(user?.role);
    if (!user || from === role) return outcome({ role: from, changed: false });
    const data = { from, to: role, source: 'idp', provider: cfg.providerId, matched, email: user.email };
    if (from === 'admin' && admins.length <= 1) {
      await appendAudit(tx, {
        actor,
        action: 'user.role.refused',
        subjectType: 'user',
        subjectId: userId,
        data: { ...data, reason: 'the last admin cannot be demoted' },
      });
      return outcome({ role: from, changed: false });
    }
    await tx.user.update({ where: { id: userId }, data: { role } });
    await appendAudit(tx, { actor, action: 'user.role.set', subjectType: 'user', subjectId: userId, data });
    return outcome({ role, changed: true }, [{ kind: 'sessions-closed', userId, reason: 'role changed' }]);
  });
}

/** `auth_time` of an ID token we stored (verified by the auth library in the sign-in that stored it), or null. */
export function authTimeOf(idToken: string | null | undefined): Date | null {
  const payload = idToken?.split('.')[1];
  if (!payload) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { auth_time?: unknown };
    return typeof claims.auth_time === 'number' && Number.isFinite(claims.auth_time)
      ? new Date(claims.auth_time * 1000)
      : null;
  } catch {
    return null;
  }
}

/**
 * The re-authentication clock of an SSO session is when the IdP last checked the person (`auth_time`), not when
 * our session was made: a silent SSO round trip on a long-lived IdP session (no prompt=login, or an IdP that
 * ignores it) must not count as a recent sign-in for approvals. Moves the session's sign-in time back to the
 * ID token's auth_time when that is older; never forward. Returns the time the session now counts from.
 */
export async function applyIdpAuthTime(
  db: PrismaClient,
  s: { sessionId: string; userId: string; providerId: string },
): Promise<Date | null> {
  const account = await db.account.findFirst({
    where: { userId: s.userId, providerId: s.providerId },
    select: { idToken: true },
    orderBy: { updatedAt: 'desc' },
  });
  const authTime = authTimeOf(account?.idToken);
  if (!authTime) return null;
  const session = await db.session.findUnique({ where: { id: s.sessionId }, select: { createdAt: true } });
  if (!session) return null;
  if (authTime.getTime() >= session.createdAt.getTime()) return session.createdAt;
  await db.session.update({ where: { id: s.sessionId }, data: { createdAt: authTime } });
  return authTime;
}
