/**
 * Service accounts and their API tokens: automation identities (CI jobs, runbooks, bots) with a role, acting
 * through bearer tokens. A token is `pyr_<tokenId>_<secret>` (32 random bytes): it is shown once, the database
 * keeps the SHA-256 of the whole token, and a presented token is looked up by its id and compared in constant
 * time, so a forged secret for a real id is refused like an unknown token. Tokens expire (ttlDays, default 90,
 * at most 365) and can be revoked; `lastUsedAt` is kept to the minute. Managing accounts and tokens is a
 * person's job (a token cannot mint tokens). Every change is audited; what a token does is audited as the
 * service account with the token's id (actor.ts, audit.ts).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  API_TOKEN_PREFIX,
  CreateApiToken,
  CreateServiceAccount,
  DEFAULT_TOKEN_TTL_DAYS,
} from '@pyreach/protocol/api';
import type { ApiToken, PrismaClient, ServiceAccount } from '@pyreach/db';
import { requireUser, type Actor, type Role } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation, parseInput } from './errors';
import { newId } from './ids';
import { roleOf } from './rows';

const DAY_MS = 24 * 60 * 60_000;
/** lastUsedAt is written at most this often per token (a busy CI job must not write on every call). */
const LAST_USED_RESOLUTION_MS = 60_000;
const TOKEN_RE = /^pyr_([A-Za-z0-9_-]{1,64})_([A-Za-z0-9_-]{43})$/;

export type ServiceActor = Extract<Actor, { type: 'service' }>;

export function hashApiToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A person may manage service accounts; a token may not (it could otherwise mint its own successors). */
function requirePerson(actor: Actor): Extract<Actor, { type: 'user' }> {
  if (actor.type === 'service')
    throw new AppError('PERSON_REQUIRED', `service account ${actor.name} tried to manage service accounts`, {
      userMessage: 'service accounts and tokens are managed by a signed-in admin, not with a token',
    });
  return requireUser(actor, 'user:manage');
}

export function tokenStatus(t: ApiToken, now: Date): 'active' | 'expired' | 'revoked' {
  if (t.revokedAt) return 'revoked';
  return t.expiresAt.getTime() <= now.getTime() ? 'expired' : 'active';
}

export function tokenView(t: ApiToken, now: Date) {
  const { tokenHash: _hash, ...rest } = t;
  return { ...rest, prefix: `${API_TOKEN_PREFIX}${t.id}_`, status: tokenStatus(t, now) };
}

function accountView(a: ServiceAccount & { tokens: ApiToken[] }, now: Date) {
  const { tokens, ...rest } = a;
  const used = tokens.map((t) => t.lastUsedAt?.getTime() ?? 0).filter((t) => t > 0);
  return {
    ...rest,
    role: roleOf(a.role),
    activeTokens: tokens.filter((t) => tokenStatus(t, now) === 'active').length,
    lastUsedAt: used.length ? new Date(Math.max(...used)) : null,
  };
}

export async function createServiceAccount(
  db: PrismaClient,
  actor: Actor,
  body: CreateServiceAccount,
  now: Date = new Date(),
) {
  const admin = requirePerson(actor);
  const input = parseInput(CreateServiceAccount, body, 'service account');
  const ownerId = input.ownerId ?? admin.id;
  const owner = await db.user.findUnique({ where: { id: ownerId }, select: { id: true } });
  if (!owner)
    throw new AppError('VALIDATION', `owner ${ownerId} does not exist`, {
      userMessage: 'ownerId: no such user',
    });
  try {
    return await db.$transaction(async (tx) => {
      const row = await tx.serviceAccount.create({
        data: {
          id: newId('sa'),
          name: input.name,
          role: input.role,
          description: input.description ?? null,
          ownerId,
          createdById: admin.id,
          createdAt: now,
        },
        include: { tokens: true },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: 'service_account.create',
          subjectType: 'service_account',
          subjectId: row.id,
          data: { name: row.name, role: row.role, ownerId },
        },
        now,
      );
      return accountView(row, now);
    });
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('CONFLICT', `service account ${input.name} exists`, {
        userMessage: `name: a service account named ${input.name} already exists`,
      });
    throw err;
  }
}

export async function listServiceAccounts(db: PrismaClient, actor: Actor, now: Date = new Date()) {
  requirePerson(actor);
  const rows = await db.serviceAccount.findMany({ orderBy: { createdAt: 'asc' }, include: { tokens: true } });
  return rows.map((r) => accountView(r, now));
}

/** Creates a token; the clear token is in the answer once and nowhere else. */
export async function createApiToken(
  db: PrismaClient,
  actor: Actor,
  serviceAccountId: string,
  body: CreateApiToken,
  now: Date = new Date(),
): Promise<{ token: string; tokenId: string; expiresAt: Date }> {
  const admin = requirePerson(actor);
  const input = parseInput(CreateApiToken, body, 'token');
  const ttlDays = input.ttlDays ?? DEFAULT_TOKEN_TTL_DAYS;
  const tokenId = newId('tok');
  const token = `${API_TOKEN_PREFIX}${tokenId}_${randomBytes(32).toString('base64url')}`;
  const expiresAt = new Date(now.getTime() + ttlDays * DAY_MS);
  await db.$transaction(async (tx) => {
    const sa = await tx.serviceAccount.findUnique({ where: { id: serviceAccountId } });
    if (!sa) throw new AppError('NOT_FOUND', `service account ${serviceAccountId} not found`);
    await tx.apiToken.create({
      data: {
        id: tokenId,
        serviceAccountId,
        tokenHash: hashApiToken(token),
        note: input.note ?? null,
        createdById: admin.id,
        createdAt: now,
        expiresAt,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'api_token.create',
        subjectType: 'service_account',
        subjectId: serviceAccountId,
        data: { tokenId, expiresAt: expiresAt.toISOString(), note: input.note ?? null },
      },
      now,
    );
  });
  return { token, tokenId, expiresAt };
}

export async function listApiTokens(
  db: PrismaClient,
  actor: Actor,
  serviceAccountId: string,
  now: Date = new Date(),
) {
  requirePerson(actor);
  const sa = await db.serviceAccount.findUnique({
    where: { id: serviceAccountId },
    include: { tokens: { orderBy: { createdAt: 'desc' } } },
  });
  if (!sa) throw new AppError('NOT_FOUND', `service account ${serviceAccountId} not found`);
  return sa.tokens.map((t) => tokenView(t, now));
}

/** Revokes a token (idempotent: revoking a revoked token answers it as it is, without a second event). */
export async function revokeApiToken(
  db: PrismaClient,
  actor: Actor,
  tokenId: string,
  now: Date = new Date(),
) {
  requirePerson(actor);
  return db.$transaction(async (tx) => {
    const t = await tx.apiToken.findUnique({ where: { id: tokenId } });
    if (!t) throw new AppError('NOT_FOUND', `token ${tokenId} not found`);
    if (t.revokedAt) return tokenView(t, now);
    const updated = await tx.apiToken.update({ where: { id: tokenId }, data: { revokedAt: now } });
    await appendAudit(
      tx,
      {
        actor,
        action: 'api_token.revoke',
        subjectType: 'service_account',
        subjectId: t.serviceAccountId,
        data: { tokenId },
      },
      now,
    );
    return tokenView(updated, now);
  });
}

/**
 * The service account behind `Authorization: Bearer <token>`. Refuses with TOKEN_INVALID (not a token of ours,
 * or a wrong secret), TOKEN_EXPIRED or TOKEN_REVOKED — the same answer whatever the caller asked for.
 */
export async function authenticateToken(
  db: PrismaClient,
  token: string,
  now: Date = new Date(),
): Promise<ServiceActor> {
  const m = TOKEN_RE.exec(token);
  const invalid = () => new AppError('TOKEN_INVALID', 'the API token is not valid');
  if (!m) throw invalid();
  const row = await db.apiToken.findUnique({ where: { id: m[1] }, include: { serviceAccount: true } });
  const presented = Buffer.from(hashApiToken(token), 'hex');
  // Compare even when the id is unknown, so the time taken does not say which ids exist.
  const stored = Buffer.from(row?.tokenHash ?? '0'.repeat(64), 'hex');
  if (!timingSafeEqual(presented, stored) || !row) throw invalid();
  if (row.revokedAt) throw new AppError('TOKEN_REVOKED', 'the API token was revoked');
  if (row.expiresAt.getTime() <= now.getTime())
    throw new AppError('TOKEN_EXPIRED', `the API token expired at ${row.expiresAt.toISOString()}`);
  if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS)
    await db.apiToken.update({ where: { id: row.id }, data: { lastUsedAt: now } });
  const role: Role = roleOf(row.serviceAccount.role);
  return {
    type: 'service',
    id: row.serviceAccount.id,
    name: row.serviceAccount.name,
    role,
    ownerId: row.serviceAccount.ownerId,
    tokenId: row.id,
  };
}
