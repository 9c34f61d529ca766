import { CreateUser, Role, type GovernanceChangeRow } from '@pyreach/protocol/api';
import type { Db, PrismaClient, Tx, User } from '@pyreach/db';
import type { AttestationKey } from './attest';
import { changeRowOf, propose, roleWidens } from './governance';
import { requireUser, SYSTEM, type Actor } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation, parseInput } from './errors';
import { newId } from './ids';
import { outcome, type Outcome } from './effects';

/** Turns a clear password into what the auth library stores (its own scrypt), so it can check it at sign-in. */
export type HashPassword = (password: string) => Promise<string>;

const conflict = () =>
  new AppError('CONFLICT', 'a user with this email already exists', {
    userMessage: 'a user with this email already exists',
  });

/**
 * Creates a password user with a role (admin only): the user, its credential and the audit event in one
 * transaction, so a failure leaves no half-made account behind. The email is stored lower-case; taken is CONFLICT.
 * An approver or admin made by a person is a governance change (governance.ts): with another admin present the
 * user starts as a viewer until a second admin confirms the role; alone, the role is given but unconfirmed.
 * Seeding (the system actor: whoever runs the seed holds the database already) needs no confirmation.
 */
export async function createUser(
  db: PrismaClient,
  actor: Actor,
  input: CreateUser,
  hashPassword: HashPassword,
  now: Date = new Date(),
  key?: AttestationKey,
): Promise<{
  user: { id: string; email: string; name: string; role: Role };
  change: GovernanceChangeRow | null;
}> {
  const requester = actor.type === 'system' ? null : requireUser(actor, 'user:manage');
  const data = parseInput(CreateUser, input, 'user');
  const email = data.email.toLowerCase();
  const governed = requester !== null && roleWidens(null, data.role);
  if (governed && !key) throw noKey();
  // Hashing is slow on purpose (scrypt): done before the transaction holds a connection.
  const hash = await hashPassword(data.password);
  try {
    return await db.$transaction(async (tx) => {
      if (await tx.user.findUnique({ where: { email }, select: { id: true } })) throw conflict();
      const id = newId('u');
      const change = governed
        ? await propose(
            tx,
            actor,
            requester.id,
            {
              kind: 'user.create',
              subjectType: 'user',
              subjectId: id,
              data: { email, role: data.role, from: null },
              reasons: [`a new ${data.role}`],
            },
            key!,
            now,
          )
        : null;
      const role: Role = change?.state === 'pending' ? 'viewer' : data.role;
      await tx.user.create({
        data: { id, email, name: data.name, emailVerified: true, role, createdAt: now },
      });
      await tx.account.create({
        data: { id: newId('acc'), userId: id, accountId: id, providerId: 'credential', password: hash },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: 'user.create',
          subjectType: 'user',
          subjectId: id,
          data: {
            email,
            role,
            ...(change ? { changeId: change.id, requestedRole: data.role } : {}),
            ...(actor.type === 'system' ? { via: actor.name } : {}),
          },
        },
        now,
      );
      return { user: { id, email, name: data.name, role }, change: change ? changeRowOf(change) : null };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw conflict();
    throw err;
  }
}

const noKey = () =>
  new AppError('INTERNAL', 'a governance change needs the attestation key', {
    userMessage: 'internal error',
  });

/** The role write itself, audited; also what a confirmed governance change applies. */
export async function writeRole(
  tx: Tx,
  actor: Actor,
  userId: string,
  role: Role,
  changeId?: string,
): Promise<User> {
  const before = await tx.user.findUnique({ where: { id: userId } });
  if (!before) throw notFound(userId);
  const updated = await tx.user.update({ where: { id: userId }, data: { role } });
  await appendAudit(tx, {
    actor,
    action: 'user.role.set',
    subjectType: 'user',
    subjectId: userId,
    data: {
      from: before.role,
      to: role,
      ...(changeId ? { changeId } : {}),
      ...(actor.type === 'system' ? { via: actor.name } : {}),
    },
  });
  return updated;
}

/**
 * Changes a user's role (admin only, audited). The last admin cannot be demoted — the admin rows are locked
 * first, so two admins demoting each other at once cannot both succeed. A change to approver or admin by a
 * person is a governance change: pending (the role stays) while another admin could confirm it, else given
 * unconfirmed. Changes to viewer or operator take effect at once.
 */
export async function setRole(
  db: PrismaClient,
  actor: Actor,
  userId: string,
  role: string,
  key?: AttestationKey,
  now: Date = new Date(),
): Promise<{ user: User; change: GovernanceChangeRow | null }> {
  const requester = actor.type === 'system' ? null : requireUser(actor, 'user:manage');
  const r = Role.safeParse(role);
  if (!r.success)
    throw new AppError('VALIDATION', `unknown role ${role}`, {
      userMessage: 'role must be viewer, operator, approver or admin',
    });
  return db.$transaction(async (tx) => {
    const admins = await tx.$queryRawUnsafe<{ id: string }[]>(
      `SELECT id FROM "user" WHERE role = 'admin' ORDER BY id FOR UPDATE`,
    );
    const user = await tx.user.findUnique({ where: { id: userId } });
    if (!user) throw notFound(userId);
    if (user.role === role) return { user, change: null };
    if (user.role === 'admin' && admins.length <= 1) {
      throw new AppError('CONFLICT', `refusing to demote ${userId}, the last admin`, {
        userMessage: 'the last admin cannot be demoted',
      });
    }
    const from = Role.catch('viewer').parse(user.role);
    if (requester && roleWidens(from, r.data)) {
      if (!key) throw noKey();
      const change = await propose(
        tx,
        actor,
        requester.id,
        {
          kind: 'user.role',
          subjectType: 'user',
          subjectId: userId,
          data: { email: user.email, role: r.data, from },
          reasons: [`${from} → ${r.data}`],
        },
        key,
        now,
      );
      if (change.state === 'pending') return { user, change: changeRowOf(change) };
      return { user: await writeRole(tx, actor, userId, r.data, change.id), change: changeRowOf(change) };
    }
    return { user: await writeRole(tx, actor, userId, r.data), change: null };
  });
}

/**
 * Seeding (npm run seed, the demo): creates the user with its role, or gives an existing one the role and keeps
 * its password. Idempotent; audited as the system actor `seed`.
 */
export async function ensureUser(
  db: PrismaClient,
  input: CreateUser,
  hashPassword: HashPassword,
): Promise<{ id: string; created: boolean }> {
  const seed: Actor = { ...SYSTEM, name: 'seed' };
  const existing = await db.user.findUnique({ where: { email: input.email.toLowerCase() } });
  if (existing) {
    await setRole(db, seed, existing.id, input.role);
    return { id: existing.id, created: false };
  }
  const created = await createUser(db, seed, input, hashPassword);
  return { id: created.user.id, created: true };
}

export async function listUsers(db: Db) {
  const users = await db.user.findMany({
    orderBy: { createdAt: 'asc' },
    select: { id: true, email: true, name: true, role: true, banned: true, createdAt: true },
  });
  return users.map((u) => ({ ...u, role: Role.catch('viewer').parse(u.role) }));
}

/** Display names and roles for user ids (who asked, who voted), for anyone who may read requests. */
export async function namesOf(db: Db, ids: string[]) {
  const users = await db.user.findMany({
    where: { id: { in: [...new Set(ids)] } },
    select: { id: true, name: true, role: true },
  });
  return Object.fromEntries(
    users.map((u) => [u.id, { name: u.name, role: Role.catch('viewer').parse(u.role) }]),
  );
}

/** `auth.sign_in` in the audit trail, as the person who signed in. */
export async function recordSignIn(db: PrismaClient, userId: string, ip: string | null): Promise<void> {
  const u = await db.user.findUnique({ where: { id: userId }, select: { email: true, role: true } });
  await db.$transaction((tx) =>
    appendAudit(tx, {
      actor: {
        type: 'user',
        id: userId,
        name: u?.email ?? userId,
        role: Role.catch('viewer').parse(u?.role),
      },
      action: 'auth.sign_in',
      subjectType: 'user',
      subjectId: userId,
      data: { ip },
    }),
  );
}

const notFound = (userId: string) =>
  new AppError('NOT_FOUND', `user ${userId} not found`, { userMessage: 'user not found' });

/**
 * Disables a user (admin only, audited) or enables them again. Disabling deletes every session of theirs in the
 * same transaction (the auth library refuses banned users too) and closes their live sockets; an admin cannot
 * disable themself, nor the last enabled admin.
 */
export async function setDisabled(
  db: PrismaClient,
  actor: Actor,
  userId: string,
  input: { disabled: boolean; reason?: string },
): Promise<Outcome<{ user: { id: string; disabled: boolean } }>> {
  const user = requireUser(actor, 'user:manage');
  if (input.disabled && user.id === userId)
    throw new AppError('CONFLICT', 'refusing self-disable', { userMessage: 'you cannot disable yourself' });
  return db.$transaction(async (tx) => {
    const admins = await tx.$queryRawUnsafe<{ id: string }[]>(
      `SELECT id FROM "user" WHERE role = 'admin' AND NOT banned ORDER BY id FOR UPDATE`,
    );
    const target = await tx.user.findUnique({ where: { id: userId } });
    if (!target) throw notFound(userId);
    if (input.disabled && target.role === 'admin' && !target.banned && admins.length <= 1)
      throw new AppError('CONFLICT', `refusing to disable ${userId}, the last admin`, {
        userMessage: 'the last admin cannot be disabled',
      });
    await tx.user.update({
      where: { id: userId },
      data: { banned: input.disabled, banReason: input.disabled ? (input.reason ?? null) : null },
    });
    const ended = input.disabled ? (await tx.session.deleteMany({ where: { userId } })).count : 0;
    await appendAudit(tx, {
      actor,
      action: input.disabled ? 'user.disable' : 'user.enable',
      subjectType: 'user',
      subjectId: userId,
      data: { email: target.email, reason: input.reason ?? null, sessionsEnded: ended },
    });
    return outcome({ user: { id: userId, disabled: input.disabled } }, [
      input.disabled && { kind: 'sessions-closed', userId, reason: 'disabled' },
    ]);
  });
}

/**
 * Sets a temporary password (admin only, audited; the password itself never is): the credential is replaced,
 * every session of the user ends, and until they change it every call but /api/me is refused.
 */
export async function setTemporaryPassword(
  db: PrismaClient,
  actor: Actor,
  userId: string,
  password: string,
  hashPassword: HashPassword,
): Promise<Outcome<{ user: { id: string; mustChangePassword: true } }>> {
  requireUser(actor, 'user:manage');
  const hash = await hashPassword(password);
  return db.$transaction(async (tx) => {
    const target = await tx.user.findUnique({ where: { id: userId } });
    if (!target) throw notFound(userId);
    const updated = await tx.account.updateMany({
      where: { userId, providerId: 'credential' },
      data: { password: hash },
    });
    if (updated.count === 0)
      await tx.account.create({
        data: { id: newId('acc'), userId, accountId: userId, providerId: 'credential', password: hash },
      });
    await tx.user.update({ where: { id: userId }, data: { mustChangePassword: true } });
    const ended = (await tx.session.deleteMany({ where: { userId } })).count;
    await appendAudit(tx, {
      actor,
      action: 'user.password.temporary',
      subjectType: 'user',
      subjectId: userId,
      data: { email: target.email, sessionsEnded: ended },
    });
    return outcome({ user: { id: userId, mustChangePassword: true as const } }, [
      { kind: 'sessions-closed', userId, reason: 'temporary password' },
    ]);
  });
}

/** The user changed their password through the auth library: the temporary-password flag goes, audited. */
export async function passwordChanged(db: PrismaClient, actor: Actor): Promise<void> {
  if (actor.type !== 'user') return;
  await db.$transaction(async (tx) => {
    await tx.user.update({ where: { id: actor.id }, data: { mustChangePassword: false } });
    await appendAudit(tx, {
      actor,
      action: 'user.password.changed',
      subjectType: 'user',
      subjectId: actor.id,
    });
  });
}

/**
 * Sign-in failures and sign-outs, audited. A failed sign-in has no person yet: the system actor `auth`
 * records the address tried (cut to 320 characters) and the client IP; these are bounded by the sign-in rate
 * limits in front of the auth library (per IP + email, and per IP).
 */
export async function recordAuthEvent(
  db: PrismaClient,
  event:
    | { kind: 'sign_in_failed'; email: string; ip: string | null; status: number }
    | { kind: 'sign_out'; actor: Actor; ip: string | null },
): Promise<void> {
  await db.$transaction((tx) =>
    event.kind === 'sign_in_failed'
      ? appendAudit(tx, {
          actor: { ...SYSTEM, name: 'auth' },
          action: 'auth.sign_in_failed',
          subjectType: 'user',
          data: { email: event.email.slice(0, 320), ip: event.ip, status: event.status },
        })
      : appendAudit(tx, {
          actor: event.actor,
          action: 'auth.sign_out',
          subjectType: 'user',
          subjectId: event.actor.type === 'user' ? event.actor.id : undefined,
          data: { ip: event.ip },
        }),
  );
}

/** A refused action (403 of any kind, STALE_AUTH) by a signed-in person, audited with the route and the code. */
export async function recordDenied(
  db: PrismaClient,
  actor: Actor,
  denied: { code: string; method: string; path: string; message: string },
): Promise<void> {
  await db.$transaction((tx) =>
    appendAudit(tx, {
      actor,
      action: 'access.denied',
      subjectType: 'route',
      subjectId: `${denied.method} ${denied.path}`.slice(0, 200),
      data: { code: denied.code, message: denied.message.slice(0, 500) },
    }),
  );
}
