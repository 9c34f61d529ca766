/**
 * Break-glass (issue 11 item 4): an admin grants a person the right to file an emergency request; it runs at
 * once without votes, is marked everywhere (`emergency`, audit `request.break_glass`, the `break_glass.used`
 * notification) and waits in a "needs review afterwards" queue until a second person — an approver or admin,
 * not its requester — closes it with a comment.
 *
 * Nothing here trusts a column: the control plane signs each grant (who, by whom, why, until when) and each
 * emergency at filing (request id, content hash, requester, grant id, time) with the vote-attestation key, held
 * outside the database. Just before signing a job, dispatch verifies both and that the grant is still valid
 * (`checkAtDispatch`), so a database writer who inserts a grant or sets `emergency` gets no signed job, and a
 * revoked or expired grant stops an emergency request that was not sent yet.
 */
import { sign, verify } from 'node:crypto';
import { BreakGlassGrantRow, CloseAfterReview, CreateBreakGlassGrant } from '@pyreach/protocol/api';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { BreakGlassGrant, Db, InjectionRequest, PrismaClient, Tx } from '@pyreach/db';
import { requireUser, type Actor } from './actor';
import type { AttestationKey } from './attest';
import { appendAudit } from './audit';
import { contentHashOfRow } from './content';
import { outcome, requestChanged, type Outcome } from './effects';
import { AppError, parseInput } from './errors';
import { newId } from './ids';
import { requestOf } from './rows';

type PublicKey = Pick<AttestationKey, 'publicKey' | 'keyId'>;

const GRANT = 'pyreach-break-glass-grant-v1\n';
const EMERGENCY = 'pyreach-break-glass-request-v1\n';

const grantBytes = (
  g: Pick<BreakGlassGrant, 'id' | 'userId' | 'grantedById' | 'reason' | 'createdAt' | 'expiresAt'>,
) =>
  Buffer.from(
    GRANT +
      canonicalJson({
        id: g.id,
        userId: g.userId,
        grantedById: g.grantedById,
        reason: g.reason,
        at: g.createdAt.toISOString(),
        expiresAt: g.expiresAt?.toISOString() ?? null,
      }),
    'utf8',
  );

/** What an emergency's attestation binds. */
export interface EmergencyFacts {
  requestId: string;
  contentHash: string;
  requesterId: string;
  grantId: string;
  at: string;
}
const emergencyBytes = (f: EmergencyFacts) =>
  Buffer.from(
    EMERGENCY +
      canonicalJson({
        requestId: f.requestId,
        contentHash: f.contentHash,
        requesterId: f.requesterId,
        grantId: f.grantId,
        at: f.at,
      }),
    'utf8',
  );

const verifies = (key: PublicKey, keyId: string | null, bytes: Buffer, sig: string | null) => {
  if (!sig || keyId !== key.keyId) return false;
  try {
    return verify(null, bytes, key.publicKey, Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
};

/** Signs an emergency at filing: the columns to store with the request. */
export function attestEmergency(key: AttestationKey, facts: EmergencyFacts) {
  return {
    breakGlassAttestation: sign(null, emergencyBytes(facts), key.privateKey).toString('base64'),
    breakGlassKeyId: key.keyId,
  };
}

function statusOf(g: BreakGlassGrant, now: Date): BreakGlassGrantRow['status'] {
  if (g.revokedAt) return 'revoked';
  if (g.expiresAt && g.expiresAt <= now) return 'expired';
  return 'active';
}

export function grantRowOf(g: BreakGlassGrant, now: Date): BreakGlassGrantRow {
  return {
    id: g.id,
    userId: g.userId,
    grantedById: g.grantedById,
    reason: g.reason,
    createdAt: g.createdAt.toISOString(),
    expiresAt: g.expiresAt?.toISOString() ?? null,
    revokedAt: g.revokedAt?.toISOString() ?? null,
    revokedById: g.revokedById,
    status: statusOf(g, now),
  };
}

/** Whether a grant is signed by the control plane, not revoked and not expired at `now`. */
export function grantValid(key: PublicKey, g: BreakGlassGrant, now: Date): boolean {
  return statusOf(g, now) === 'active' && verifies(key, g.attestationKeyId, grantBytes(g), g.attestation);
}

/** The user's valid grant (newest first), or null: a grant row written behind the control plane's back is none. */
export async function activeGrant(
  db: Db,
  key: PublicKey,
  userId: string,
  now: Date,
): Promise<BreakGlassGrant | null> {
  const rows = await db.breakGlassGrant.findMany({
    where: { userId, revokedAt: null },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
  });
  return rows.find((g) => grantValid(key, g, now)) ?? null;
}

/** The grant an emergency is filed under, or FORBIDDEN naming break-glass. */
export async function requireGrant(db: Db, key: PublicKey, userId: string, now: Date) {
  const g = await activeGrant(db, key, userId, now);
  if (!g)
    throw new AppError('FORBIDDEN', `user ${userId} has no valid break-glass grant`, {
      userMessage:
        'emergency: you hold no valid break-glass grant; an admin grants it (Admin → Users → Break-glass), or file a normal request',
    });
  return g;
}

/**
 * Grants break-glass (admin, audited `break_glass.grant`): replaces the person's active grant. Never to yourself
 * (one admin would need nobody else to run code), never to a disabled user or a viewer (who cannot file).
 */
export async function grantBreakGlass(
  db: PrismaClient,
  actor: Actor,
  input: CreateBreakGlassGrant,
  key: AttestationKey,
  now: Date = new Date(),
): Promise<Outcome<{ grant: BreakGlassGrantRow }>> {
  const admin = requireUser(actor, 'user:manage');
  const data = parseInput(CreateBreakGlassGrant, input, 'break-glass grant');
  if (data.userId === admin.id)
    throw new AppError('SELF_APPROVAL', `admin ${admin.id} tried to grant themself break-glass`, {
      userMessage: 'userId: another admin must grant you break-glass',
    });
  const expiresAt = data.expiresAt ? new Date(data.expiresAt) : null;
  if (expiresAt && expiresAt <= now)
    throw new AppError('VALIDATION', 'break-glass grant expiry in the past', {
      userMessage: 'expiresAt: must be in the future',
    });
  return db.$transaction(async (tx) => {
    const user = await tx.user.findUnique({ where: { id: data.userId } });
    if (!user)
      throw new AppError('NOT_FOUND', `user ${data.userId} not found`, { userMessage: 'user not found' });
    if (user.banned)
      throw new AppError('INVALID_STATE', `user ${data.userId} is disabled`, {
        userMessage: 'userId: a disabled user cannot be granted break-glass',
      });
    if (user.role !== 'operator' && user.role !== 'admin')
      throw new AppError('VALIDATION', `role ${user.role} cannot file requests`, {
        userMessage: `userId: a ${user.role} cannot file requests; break-glass is for operators and admins`,
      });
    const replaced = await tx.breakGlassGrant.updateMany({
      where: { userId: data.userId, revokedAt: null },
      data: { revokedAt: now, revokedById: admin.id },
    });
    const facts = {
      id: newId('bg'),
      userId: data.userId,
      grantedById: admin.id,
      reason: data.reason,
      createdAt: new Date(now.getTime()),
      expiresAt,
    };
    const g = await tx.breakGlassGrant.create({
      data: {
        ...facts,
        attestation: sign(null, grantBytes(facts), key.privateKey).toString('base64'),
        attestationKeyId: key.keyId,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'break_glass.grant',
        subjectType: 'user',
        subjectId: data.userId,
        data: {
          grantId: g.id,
          email: user.email,
          reason: data.reason,
          expiresAt: expiresAt?.toISOString() ?? null,
          replaced: replaced.count,
        },
      },
      now,
    );
    return outcome({ grant: grantRowOf(g, now) });
  });
}

/** Revokes a grant (admin, audited `break_glass.revoke`); emergency requests under it not yet sent are refused. */
export async function revokeBreakGlass(
  db: PrismaClient,
  actor: Actor,
  id: string,
  now: Date = new Date(),
): Promise<Outcome<{ grant: BreakGlassGrantRow }>> {
  const admin = requireUser(actor, 'user:manage');
  return db.$transaction(async (tx) => {
    const g = await tx.breakGlassGrant.findUnique({ where: { id } });
    if (!g) throw new AppError('NOT_FOUND', `grant ${id} not found`, { userMessage: 'grant not found' });
    if (g.revokedAt)
      throw new AppError('INVALID_STATE', `grant ${id} is revoked`, {
        userMessage: 'this grant is already revoked',
      });
    const r = await tx.breakGlassGrant.update({
      where: { id },
      data: { revokedAt: now, revokedById: admin.id },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'break_glass.revoke',
        subjectType: 'user',
        subjectId: g.userId,
        data: { grantId: id },
      },
      now,
    );
    return outcome({ grant: grantRowOf(r, now) });
  });
}

export async function listGrants(db: Db, now: Date): Promise<BreakGlassGrantRow[]> {
  const rows = await db.breakGlassGrant.findMany({
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: 500,
  });
  return rows.map((g) => grantRowOf(g, now));
}

/**
 * Just before signing a job of an emergency request: the content hash recomputed from the row, the filing's
 * attestation over it, and the grant it names — signed, the requester's, neither revoked nor expired now.
 */
export async function checkAtDispatch(
  tx: Tx,
  req: InjectionRequest,
  key: PublicKey,
  now: Date,
): Promise<{ ok: true } | { ok: false; message: string }> {
  const no = (why: string) => ({ ok: false as const, message: `break-glass: ${why}` });
  const hash = contentHashOfRow(req);
  if (hash !== req.contentHash) return no('the request’s content does not match what was filed');
  if (!req.breakGlassGrantId || !req.breakGlassAt) return no('no grant was recorded when it was filed');
  const filed = verifies(
    key,
    req.breakGlassKeyId,
    emergencyBytes({
      requestId: req.id,
      contentHash: req.contentHash,
      requesterId: req.requesterId,
      grantId: req.breakGlassGrantId,
      at: req.breakGlassAt.toISOString(),
    }),
    req.breakGlassAttestation,
  );
  if (!filed) return no('the emergency was not filed through the control plane (no valid attestation)');
  const g = await tx.breakGlassGrant.findUnique({ where: { id: req.breakGlassGrantId } });
  if (!g || g.userId !== req.requesterId) return no('the grant it was filed under is gone');
  if (g.revokedAt) return no('the grant it was filed under was revoked before it was sent');
  if (g.expiresAt && g.expiresAt <= now) return no('the grant it was filed under expired before it was sent');
  if (!grantValid(key, g, now)) return no('the grant has no valid control-plane signature');
  return { ok: true };
}

/**
 * Closes the review afterwards of a break-glass request (approver or admin, a person; never its requester),
 * with a comment; audited `request.after_review.close`.
 */
export async function closeAfterReview(
  db: PrismaClient,
  actor: Actor,
  id: string,
  input: CloseAfterReview,
  now: Date = new Date(),
) {
  const user = requireUser(actor, 'request:review');
  const data = parseInput(CloseAfterReview, input, 'after-review');
  return db.$transaction(async (tx) => {
    await tx.$queryRawUnsafe('SELECT id FROM "injection_request" WHERE id = $1 FOR UPDATE', id);
    const req = await tx.injectionRequest.findUnique({ where: { id } });
    if (!req)
      throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
    if (req.afterReview !== 'open')
      throw new AppError('INVALID_STATE', `request ${id} has no open after-review`, {
        userMessage:
          req.afterReview === 'closed'
            ? 'this review afterwards is already closed'
            : 'this request was not break-glass',
      });
    if (req.requesterId === user.id)
      throw new AppError('SELF_APPROVAL', `user ${user.id} tried to close own after-review ${id}`, {
        userMessage: 'a second person must review your emergency request afterwards',
      });
    const r = await tx.injectionRequest.update({
      where: { id },
      data: {
        afterReview: 'closed',
        afterReviewById: user.id,
        afterReviewAt: now,
        afterReviewComment: data.comment,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'request.after_review.close',
        subjectType: 'request',
        subjectId: id,
        data: { comment: data.comment, breakGlass: true, grantId: req.breakGlassGrantId },
      },
      now,
    );
    const result = requestOf(r);
    return outcome(result, [requestChanged(result)]);
  });
}
