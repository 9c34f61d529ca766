import { createHash, randomBytes } from 'node:crypto';
import { publicKeyFromPem } from '@pyreach/protocol/job';
import {
  CreateJoinToken,
  hostMatches,
  isBacklogged,
  isReusable,
  JOIN_TOKEN_DEFAULT_MINUTES,
  JOIN_TOKEN_PREFIX,
  type GovernanceChangeRow,
  type JoinTokenRow,
  type NamespaceLabels,
} from '@pyreach/protocol/api';
import type { ErrorCode } from '@pyreach/protocol/errors';
import type { Labels } from '@pyreach/protocol/common';
import type { EnrollRequest } from '@pyreach/protocol/agent';
import { IN_FLIGHT_EXECUTION_STATES } from '@pyreach/protocol/states';
import type { Agent, Db, JoinToken, PrismaClient, Tx } from '@pyreach/db';
import { requireUser, SYSTEM, type Actor } from './actor';
import { appendAudit } from './audit';
import { outcome, type Outcome } from './effects';
import { AppError, parseInput } from './errors';
import { newId } from './ids';
import { labelsOf, namespaceLabelsOf } from './rows';
import type { AttestationKey } from './attest';
import {
  DECLARATION_COLUMNS,
  declarationOf,
  declareInTx,
  signDeclaration,
  verifiedDeclarationOf,
} from './namespace-labels';

/**
 * An agent row with its labels parsed; the public key stays out of what the API shows. The outbox's oldest
 * age is the heartbeat's plus the time since (a wedged or silent agent's backlog keeps ageing), and `backlog`
 * flags it past OUTBOX_BACKLOG_SECONDS (protocol api.ts, the one rule the dashboard shows too). Labels are the
 * join token's (they decide policy); what the agent claims is kept apart as `reportedLabels`.
 */
export function agentOf(
  row: Agent & {
    joinToken?: { id: string; namespaceLabels: unknown; namespaceLabelsAttestation: string | null } | null;
  },
  now: Date = new Date(),
  /** Checks the declaration's signature (admin views); without it `namespaceLabelsUntrusted` stays null. */
  key?: Pick<AttestationKey, 'publicKey'>,
) {
  const { publicKey: _publicKey, labels, reportedLabels, namespaceLabels, joinToken, ...rest } = row;
  const since = row.lastSeenAt
    ? Math.max(0, Math.floor((now.getTime() - row.lastSeenAt.getTime()) / 1000))
    : 0;
  const outboxOldestAgeSeconds =
    row.outboxDepth > 0 && row.outboxOldestAgeSeconds !== null ? row.outboxOldestAgeSeconds + since : null;
  const outbox = { outboxDepth: row.outboxDepth, outboxOldestAgeSeconds };
  return {
    ...rest,
    labels: labelsOf(labels),
    reportedLabels: labelsOf(reportedLabels),
    namespaceLabels: namespaceLabels === null ? null : namespaceLabelsOf(namespaceLabels),
    effectiveNamespaceLabels: declarationOf({ namespaceLabels, joinToken }),
    namespaceLabelsUntrusted: key ? untrustedReason(key, row) : null,
    ...outbox,
    backlog: isBacklogged(outbox),
  };
}
export type AgentView = ReturnType<typeof agentOf>;

function untrustedReason(key: Pick<AttestationKey, 'publicKey'>, row: Parameters<typeof agentOf>[0]) {
  const v = verifiedDeclarationOf(key, { ...row, joinToken: row.joinToken ?? null });
  return v.ok ? null : v.reason;
}

export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface CreatedJoinToken {
  id: string;
  /** The clear token: shown once, never stored. */
  token: string;
  expiresAt: Date;
  labels: Labels;
  /** The namespace declaration in force ({} while a loosening one waits for a second admin). */
  namespaceLabels: NamespaceLabels;
  /** The governance change a loosening declaration made, else null. */
  change: GovernanceChangeRow | null;
  maxUses: number | null;
  hostPattern: string | null;
}

/**
 * Creates a join token (admin only): one-time by default (`maxUses` 1, an hour), or reusable by a fleet
 * (`maxUses` above 1 or null for unlimited, 30 days by default, at most 365), optionally bound to a host-name
 * pattern the enrolling agent's reported host name must match. The clear token (`pyrjt_` + 32 random bytes,
 * base64url) is returned once; the database keeps its SHA-256. `labels` are forced onto every agent that enrols
 * with it. `namespaceLabels` (which namespaces carry which policy labels for its agents' processes) is a
 * governance change when it loosens a policy for some process (namespace-labels.ts): then it waits for a second
 * admin (the token works meanwhile, without it) or, with no other admin, applies flagged `unconfirmed`.
 */
export async function createJoinToken(
  db: PrismaClient,
  actor: Actor,
  body: CreateJoinToken,
  now: Date = new Date(),
  /**
   * Signs the token's namespace declaration ({} too: policy reads only signed declarations) and a loosening one's
   * governance change. Without it the token's agents price no process in a namespace.
   */
  attestation?: AttestationKey,
): Promise<CreatedJoinToken> {
  const user = requireUser(actor, 'agent:manage');
  const input = parseInput(CreateJoinToken, body, 'join token');
  const maxUses = input.maxUses === undefined ? 1 : input.maxUses;
  const ttl =
    input.ttlMinutes ??
    (isReusable({ maxUses }) ? JOIN_TOKEN_DEFAULT_MINUTES.reusable : JOIN_TOKEN_DEFAULT_MINUTES.oneTime);
  const hostPattern = input.hostPattern ?? null;
  // A fixed prefix: base64url can start with '-', which a CLI reads as an option (`--token -x…` is refused
  // as ambiguous, about one token in 64), and a recognisable prefix lets secret scanners find leaked tokens.
  const token = `${JOIN_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const id = newId('jt');
  const expiresAt = new Date(now.getTime() + ttl * 60_000);
  const labels = input.labels ?? {};
  const declared = input.namespaceLabels ?? {};
  const declaration = await db.$transaction(async (tx) => {
    await tx.joinToken.create({
      data: {
        id,
        tokenHash: hashJoinToken(token),
        labels,
        note: input.note ?? null,
        expiresAt,
        maxUses,
        hostPattern,
        createdById: user.id,
        // Nothing declared yet, signed: a declaration below (or later) replaces it and its signature.
        namespaceLabelsAttestation: attestation
          ? signDeclaration(attestation, { subjectType: 'join_token', id, value: {} })
          : null,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'agent.join_token.create',
        subjectType: 'join_token',
        subjectId: id,
        data: {
          labels,
          namespaceLabels: declared,
          expiresAt: expiresAt.toISOString(),
          note: input.note ?? null,
          maxUses,
          hostPattern,
        },
      },
      now,
    );
    if (Object.keys(declared).length === 0) return { change: null, applied: true };
    return declareInTx(
      tx,
      actor,
      user.id,
      { type: 'join_token', id, host: labels },
      { stored: {}, inForce: {} },
      { stored: declared, inForce: declared },
      attestation,
      now,
    );
  });
  return {
    id,
    token,
    expiresAt,
    labels,
    namespaceLabels: declaration.applied ? declared : {},
    change: declaration.change,
    maxUses,
    hostPattern,
  };
}

/** A refusal of a token the control plane knows: its code, a log message and what the agent is told. */
type Refusal = { code: ErrorCode; why: string; userMessage: string };

/** Why `token` cannot enrol `hostname` now, or null when it can (the use count is checked by the update). */
function refusalOf(token: JoinToken, hostname: string, now: Date): Refusal | null {
  if (token.revokedAt)
    return { code: 'JOIN_TOKEN_REVOKED', why: 'revoked', userMessage: 'this join token was revoked' };
  if (token.expiresAt <= now)
    return { code: 'JOIN_TOKEN_EXPIRED', why: 'expired', userMessage: 'this join token has expired' };
  if (token.hostPattern !== null && !hostMatches(token.hostPattern, hostname))
    return {
      code: 'JOIN_TOKEN_HOST_MISMATCH',
      why: `host name ${JSON.stringify(hostname)} outside the pattern ${JSON.stringify(token.hostPattern)}`,
      // The pattern itself is not told: a token holder should not learn which names it would accept.
      userMessage: `this join token does not allow host name ${JSON.stringify(hostname)}`,
    };
  if (token.maxUses !== null && token.useCount >= token.maxUses)
    return {
      code: 'JOIN_TOKEN_USED_UP',
      why: `all ${token.maxUses} uses taken`,
      userMessage: `this join token has no uses left (${token.maxUses} of ${token.maxUses} taken)`,
    };
  return null;
}

/** Refusals of one token are audited at most once in this window; the rest are counted on the token. */
export const REFUSAL_AUDIT_WINDOW_MS = 60_000;

/**
 * Records a refusal of a known token and returns the error to answer with. The first refusal of a window is
 * audited (`agent.enroll_refused`, subject the token, with the refusals counted since the last audited one); the
 * others only add to `refusedCount`. So a leaked, used-up token replayed in a loop writes one audit event a
 * minute, not one per attempt, while a lone refusal is visible at once.
 */
async function refuse(
  db: PrismaClient,
  token: JoinToken,
  req: EnrollRequest,
  r: Refusal,
  now: Date,
): Promise<AppError> {
  await db.$transaction(async (tx) => {
    const due = await tx.joinToken.updateMany({
      where: {
        id: token.id,
        OR: [
          { refusalAuditedAt: null },
          { refusalAuditedAt: { lte: new Date(now.getTime() - REFUSAL_AUDIT_WINDOW_MS) } },
        ],
      },
      data: { refusalAuditedAt: now, refusedCount: 0 },
    });
    if (due.count === 1) {
      await appendAudit(
        tx,
        {
          actor: { type: 'system', name: 'agent-enrolment' },
          action: 'agent.enroll_refused',
          subjectType: 'join_token',
          subjectId: token.id,
          data: {
            reason: r.code,
            hostname: req.hostname,
            agentVersion: req.agentVersion,
            refusedSinceLastAudit: token.refusedCount,
          },
        },
        now,
      );
    } else {
      await tx.joinToken.update({ where: { id: token.id }, data: { refusedCount: { increment: 1 } } });
    }
  });
  return new AppError(r.code, `enrolment refused: token ${token.id} ${r.why}`, {
    userMessage: r.userMessage,
  });
}

/**
 * Revokes `agent` inside `tx`: refused from then on, its in-flight executions `agent_lost`, audited as `action`.
 * The caller publishes `agent-revoked` after the commit (the gateway drops its socket everywhere).
 */
async function revokeInTx(
  tx: Tx,
  actor: Actor,
  agent: Agent,
  reason: string,
  action: 'agent.revoke' | 'agent.replaced',
  now: Date,
  data: Record<string, unknown> = {},
): Promise<Agent> {
  const updated = await tx.agent.update({
    where: { id: agent.id },
    data: { revokedAt: now, revokedReason: reason, status: 'offline' },
    include: WITH_TOKEN_DECLARATION,
  });
  const lost = await tx.execution.updateMany({
    where: { agentId: agent.id, state: { in: [...IN_FLIGHT_EXECUTION_STATES] } },
    data: {
      state: 'agent_lost',
      errorCode: 'AGENT_REVOKED',
      errorMessage: 'the agent was revoked while this job was in flight',
      finishedAt: now,
    },
  });
  await appendAudit(
    tx,
    {
      actor,
      action,
      subjectType: 'agent',
      subjectId: agent.id,
      data: { reason, lostExecutions: lost.count, ...data },
    },
    now,
  );
  return updated;
}

/**
 * Enrols an agent with a join token. An unknown token is UNAUTHENTICATED and not audited (nothing to attribute
 * it to; 256 random bits are not guessed). A known one that cannot enrol is refused with what is wrong
 * (JOIN_TOKEN_REVOKED, _EXPIRED, _HOST_MISMATCH, _USED_UP) and audited (see `refuse`). Otherwise one use is taken
 * by ONE conditional UPDATE (not revoked, not expired, a use left) in the transaction that creates the agent:
 * ten agents racing for a token with five uses give exactly five agents, on PostgreSQL (the row lock re-checks
 * the condition) and PGlite alike.
 *
 * Re-enrolment: a host that enrols again with the same token under the same host name (a pod rescheduled onto a
 * node whose state directory was lost) replaces the token's live agent of that name: the old agent is revoked
 * (`agent.replaced`, its socket dropped, its in-flight work `agent_lost`) and the new one — its own new key pair
 * and id — takes its place, so the fleet shows the host once. The replacement takes a use like any enrolment.
 *
 * The labels that decide policy are the token's only; what the agent claims is kept as `reportedLabels`.
 */
export async function enrollAgent(
  db: PrismaClient,
  req: EnrollRequest,
  now: Date = new Date(),
  /** Signs the new agent's "follows its join token" (NULL) declaration; without it none of its namespaces price. */
  attestation?: Pick<AttestationKey, 'privateKey'>,
): Promise<Outcome<Agent>> {
  try {
    publicKeyFromPem(req.publicKey);
  } catch {
    throw new AppError('VALIDATION', 'publicKey is not an Ed25519 SPKI PEM');
  }
  const token = await db.joinToken.findUnique({ where: { tokenHash: hashJoinToken(req.token) } });
  if (!token)
    throw new AppError('UNAUTHENTICATED', 'enrolment refused: unknown token', {
      userMessage: 'join token is not valid',
    });
  const early = refusalOf(token, req.hostname, now);
  if (early) throw await refuse(db, token, req, early, now);

  const result = await db.$transaction(async (tx) => {
    const taken = await tx.$queryRaw<{ useCount: number }[]>`
      UPDATE "join_token" SET "useCount" = "useCount" + 1, "lastUsedAt" = ${now}
      WHERE "id" = ${token.id} AND "revokedAt" IS NULL AND "expiresAt" > ${now}
        AND ("maxUses" IS NULL OR "useCount" < "maxUses")
      RETURNING "useCount"`;
    if (taken.length !== 1) return null;
    const id = newId('ag');
    const actor: Actor = { type: 'agent', id, name: req.hostname };
    const replaced = await tx.agent.findMany({
      where: { joinTokenId: token.id, name: req.hostname, revokedAt: null },
    });
    for (const old of replaced) {
      await revokeInTx(
        tx,
        actor,
        old,
        `replaced by ${id} (re-enrolled with the same join token)`,
        'agent.replaced',
        now,
        {
          joinTokenId: token.id,
          replacedBy: id,
        },
      );
    }
    const labels = labelsOf(token.labels);
    const agent = await tx.agent.create({
      data: {
        id,
        name: req.hostname,
        publicKey: req.publicKey,
        labels,
        reportedLabels: req.labels,
        version: req.agentVersion,
        enrolledAt: now,
        joinTokenId: token.id,
        // The agent follows its token's declaration: signed, bound to this token (policy reads only signed ones).
        namespaceLabelsAttestation: attestation
          ? signDeclaration(attestation, { subjectType: 'agent', id, joinTokenId: token.id, value: null })
          : null,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'agent.enroll',
        subjectType: 'agent',
        subjectId: id,
        data: {
          joinTokenId: token.id,
          labels,
          reportedLabels: req.labels,
          version: req.agentVersion,
          use: taken[0]!.useCount,
          maxUses: token.maxUses,
          replaced: replaced.map((a) => a.id),
        },
      },
      now,
    );
    return { agent, replaced };
  });
  if (!result) {
    // Lost the race for the last use, or revoked/expired meanwhile: say which, from the row as it is now.
    const now_ = await db.joinToken.findUniqueOrThrow({ where: { id: token.id } });
    const late = refusalOf(now_, req.hostname, now) ?? {
      code: 'JOIN_TOKEN_USED_UP' as const,
      why: 'no use left',
      userMessage: 'this join token has no uses left',
    };
    throw await refuse(db, now_, req, late, now);
  }
  return outcome(result.agent, [
    ...result.replaced.map((a) => ({
      kind: 'agent-revoked' as const,
      agentId: a.id,
      reason: 'replaced: the host enrolled again',
    })),
    { kind: 'fleet', hostId: null },
  ]);
}

/**
 * Revokes an agent for good (admin only): it is refused from then on; the gateway drops its socket.
 * Its in-flight executions become `agent_lost`.
 */
export async function revokeAgent(
  db: PrismaClient,
  actor: Actor,
  agentId: string,
  reason: string,
  now: Date = new Date(),
): Promise<Outcome<AgentView>> {
  requireUser(actor, 'agent:manage');
  const revoked = await db.$transaction(async (tx) => {
    const agent = await tx.agent.findUnique({ where: { id: agentId } });
    if (!agent)
      throw new AppError('NOT_FOUND', `agent ${agentId} not found`, { userMessage: 'agent not found' });
    if (agent.revokedAt)
      throw new AppError('INVALID_STATE', `agent ${agentId} is already revoked`, {
        userMessage: 'agent is already revoked',
      });
    return revokeInTx(tx, actor, agent, reason, 'agent.revoke', now);
  });
  // After the commit: the agent is told and dropped everywhere; it is refused at every later handshake.
  return outcome(agentOf(revoked), [
    { kind: 'agent-revoked', agentId, reason },
    { kind: 'fleet', hostId: null },
  ]);
}

type TokenWithAgents = JoinToken & {
  agents: Pick<Agent, 'id' | 'name' | 'status' | 'enrolledAt' | 'revokedAt' | 'revokedReason'>[];
};
const TOKEN_AGENTS = {
  agents: {
    select: { id: true, name: true, status: true, enrolledAt: true, revokedAt: true, revokedReason: true },
    orderBy: { enrolledAt: 'desc' as const },
  },
};

/** A join token as the API shows it: never its hash, always its uses and the agents it enrolled. */
export function joinTokenOf(
  row: TokenWithAgents,
  now: Date = new Date(),
  pendingNamespaceLabels: NamespaceLabels | null = null,
): JoinTokenRow {
  const status = row.revokedAt
    ? 'revoked'
    : row.expiresAt <= now
      ? 'expired'
      : row.maxUses !== null && row.useCount >= row.maxUses
        ? 'used_up'
        : 'active';
  return {
    id: row.id,
    note: row.note,
    labels: labelsOf(row.labels),
    namespaceLabels: namespaceLabelsOf(row.namespaceLabels),
    pendingNamespaceLabels,
    maxUses: row.maxUses,
    useCount: row.useCount,
    hostPattern: row.hostPattern,
    createdById: row.createdById,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    refusedCount: row.refusedCount,
    status,
    agents: row.agents.map((a) => ({
      id: a.id,
      name: a.name,
      status: a.status === 'online' ? 'online' : 'offline',
      enrolledAt: a.enrolledAt.toISOString(),
      revokedAt: a.revokedAt?.toISOString() ?? null,
      revokedReason: a.revokedReason,
    })),
  };
}

/** Join tokens for review (admin only), newest first (the latest JOIN_TOKEN_LIST_LIMIT). */
export const JOIN_TOKEN_LIST_LIMIT = 500;
export async function listJoinTokens(db: Db, actor: Actor, now: Date = new Date()): Promise<JoinTokenRow[]> {
  requireUser(actor, 'agent:manage');
  const rows = await db.joinToken.findMany({
    orderBy: { createdAt: 'desc' },
    take: JOIN_TOKEN_LIST_LIMIT,
    include: TOKEN_AGENTS,
  });
  const pending = await db.governanceChange.findMany({
    where: {
      kind: 'namespace_labels.set',
      subjectType: 'join_token',
      state: 'pending',
      subjectId: { in: rows.map((r) => r.id) },
    },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    select: { subjectId: true, data: true },
  });
  // The latest pending declaration of each token.
  const waiting = new Map(
    pending.map((c) => [c.subjectId, namespaceLabelsOf((c.data as { after?: unknown }).after ?? {})]),
  );
  return rows.map((r) => joinTokenOf(r, now, waiting.get(r.id) ?? null));
}

function tokenNotFound(id: string): AppError {
  return new AppError('NOT_FOUND', `join token ${id} not found`, { userMessage: 'join token not found' });
}

/** Revokes a join token (admin only): no agent enrols with it from now on; those it enrolled stay. */
export async function revokeJoinToken(
  db: PrismaClient,
  actor: Actor,
  id: string,
  now: Date = new Date(),
): Promise<Outcome<JoinTokenRow>> {
  const user = requireUser(actor, 'agent:manage');
  const row = await db.$transaction(async (tx) => {
    const done = await tx.joinToken.updateMany({
      where: { id, revokedAt: null },
      data: { revokedAt: now, revokedById: user.id },
    });
    if (done.count !== 1) {
      const exists = await tx.joinToken.findUnique({ where: { id }, select: { id: true } });
      if (!exists) throw tokenNotFound(id);
      throw new AppError('INVALID_STATE', `join token ${id} is already revoked`, {
        userMessage: 'join token is already revoked',
      });
    }
    await appendAudit(
      tx,
      { actor, action: 'agent.join_token.revoke', subjectType: 'join_token', subjectId: id },
      now,
    );
    return tx.joinToken.findUniqueOrThrow({ where: { id }, include: TOKEN_AGENTS });
  });
  return outcome(joinTokenOf(row, now));
}

/**
 * Revokes every live agent enrolled through a join token (admin only), as revokeAgent does one: refused from
 * then on, sockets dropped after the commit, in-flight work `agent_lost`; one `agent.revoke` per agent (naming
 * the token) and one `agent.join_token.revoke_agents`. The token itself stays as it is (revoke it too to stop
 * new enrolments).
 */
export async function revokeJoinTokenAgents(
  db: PrismaClient,
  actor: Actor,
  id: string,
  reason: string,
  now: Date = new Date(),
): Promise<Outcome<{ joinToken: JoinTokenRow; revokedAgentIds: string[] }>> {
  requireUser(actor, 'agent:manage');
  const { row, ids } = await db.$transaction(async (tx) => {
    const token = await tx.joinToken.findUnique({ where: { id }, select: { id: true } });
    if (!token) throw tokenNotFound(id);
    const live = await tx.agent.findMany({ where: { joinTokenId: id, revokedAt: null } });
    for (const agent of live) {
      await revokeInTx(tx, actor, agent, reason, 'agent.revoke', now, { joinTokenId: id });
    }
    await appendAudit(
      tx,
      {
        actor,
        action: 'agent.join_token.revoke_agents',
        subjectType: 'join_token',
        subjectId: id,
        data: { reason, agentIds: live.map((a) => a.id) },
      },
      now,
    );
    const row = await tx.joinToken.findUniqueOrThrow({ where: { id }, include: TOKEN_AGENTS });
    return { row, ids: live.map((a) => a.id) };
  });
  return outcome({ joinToken: joinTokenOf(row, now), revokedAgentIds: ids }, [
    ...ids.map((agentId) => ({ kind: 'agent-revoked' as const, agentId, reason })),
    ...(ids.length > 0 ? [{ kind: 'fleet' as const, hostId: null }] : []),
  ]);
}

/** What agentOf needs to show the namespace declaration in force (the token's when the agent has none). */
const WITH_TOKEN_DECLARATION = { joinToken: DECLARATION_COLUMNS.joinToken } as const;

/** One agent, or NOT_FOUND. */
export async function getAgent(
  db: Db,
  agentId: string,
  key?: Pick<AttestationKey, 'publicKey'>,
): Promise<AgentView> {
  const agent = await db.agent.findUnique({ where: { id: agentId }, include: WITH_TOKEN_DECLARATION });
  if (!agent)
    throw new AppError('NOT_FOUND', `agent ${agentId} not found`, { userMessage: 'agent not found' });
  return agentOf(agent, new Date(), key);
}

/** Agents, newest enrolment first. Revoked ones only when asked. */
export async function listAgents(
  db: Db,
  filter: { status?: 'online' | 'offline'; includeRevoked?: boolean } = {},
  /** Checks each declaration's signature (see agentOf). */
  key?: Pick<AttestationKey, 'publicKey'>,
): Promise<AgentView[]> {
  const agents = await db.agent.findMany({
    where: {
      ...(filter.status ? { status: filter.status } : {}),
      ...(filter.includeRevoked ? {} : { revokedAt: null }),
    },
    orderBy: { enrolledAt: 'desc' },
    include: WITH_TOKEN_DECLARATION,
  });
  const now = new Date();
  return agents.map((a) => agentOf(a, now, key));
}

/**
 * Records an authenticated connection. Refuses revoked or unknown agents (FORBIDDEN / NOT_FOUND) — the gateway
 * calls this after the challenge-response and before accepting any event.
 */
export async function markConnected(
  db: PrismaClient,
  agentId: string,
  now: Date = new Date(),
): Promise<Agent> {
  return db.$transaction(async (tx) => {
    const agent = await tx.agent.findUnique({ where: { id: agentId } });
    if (!agent)
      throw new AppError('NOT_FOUND', `agent ${agentId} not found`, { userMessage: 'unknown agent' });
    if (agent.revokedAt)
      throw new AppError('FORBIDDEN', `agent ${agentId} is revoked`, {
        userMessage: 'this agent has been revoked',
      });
    const updated = await tx.agent.update({
      where: { id: agentId },
      // Back: a later loss is a new one (told again).
      data: { status: 'online', connectedAt: now, lastSeenAt: now, lostAt: null },
    });
    await appendAudit(
      tx,
      {
        actor: { type: 'agent', id: agentId, name: agent.name },
        action: 'agent.connect',
        subjectType: 'agent',
        subjectId: agentId,
        ...(agent.lostAt ? { data: { returnedAfterLoss: agent.lostAt.toISOString() } } : {}),
      },
      now,
    );
    return updated;
  });
}

/**
 * Records that the agent's socket closed (executions are only marked lost later: see markAgentLost). With
 * `connectedAt` (the closed connection's start, as given to markConnected) nothing changes when the agent has
 * connected again since — on another replica, whose connect may be recorded before this disconnect.
 */
export async function markDisconnected(
  db: PrismaClient,
  agentId: string,
  now: Date = new Date(),
  connectedAt?: Date | null,
): Promise<void> {
  await db.$transaction(async (tx) => {
    const res = await tx.agent.updateMany({
      where: { id: agentId, status: 'online', ...(connectedAt ? { connectedAt } : {}) },
      data: { status: 'offline', lastSeenAt: now },
    });
    if (res.count === 1) {
      await appendAudit(
        tx,
        { actor: SYSTEM, action: 'agent.disconnect', subjectType: 'agent', subjectId: agentId },
        now,
      );
    }
  });
}

/** Heartbeat: last seen (server clock) and the agent's outbox backlog. Not audited (not a state change). */
export async function recordHeartbeat(
  db: Db,
  agentId: string,
  hb: { outboxDepth?: number; outboxOldestAgeSeconds?: number | null },
  now: Date = new Date(),
): Promise<void> {
  const res = await db.agent.updateMany({
    where: { id: agentId, revokedAt: null },
    data: {
      lastSeenAt: now,
      outboxDepth: hb.outboxDepth ?? 0,
      outboxOldestAgeSeconds: hb.outboxOldestAgeSeconds ?? null,
    },
  });
  if (res.count !== 1)
    throw new AppError('FORBIDDEN', `heartbeat from unknown or revoked agent ${agentId}`, {
      userMessage: 'this agent is not allowed',
    });
}

/** Who records losses in the audit trail. */
export const LOSS_WATCH: Actor = { type: 'system', name: 'agent-watch' };

/** Agents declared lost in one pass at most (the next pass takes the rest). */
const LOST_BATCH = 100;

/**
 * Declares agents lost whose connection has been gone longer than `lostAfterSeconds` (issue 13): offline, not
 * revoked, not already lost, last seen (the disconnect sets it) before the cut-off. Each is claimed by ONE
 * conditional UPDATE of `lostAt` and audited `agent.lost` in the same transaction — which is also where its
 * notifications enter the outbox — so two replicas sweeping at once (a leader hand-over) record each loss
 * once, and a loss is not told again until the agent connected (markConnected clears `lostAt`).
 *
 * An agent still `online` in the database with no replica holding its connection (its replica died without
 * recording the disconnect) is recorded disconnected here first; it is then lost `lostAfterSeconds` later.
 * `lostAfterSeconds` 0: off.
 */
export async function declareLostAgents(
  db: PrismaClient,
  opts: { lostAfterSeconds: number; connectedAnywhere(agentId: string): Promise<boolean> },
  now: Date = new Date(),
): Promise<{ lost: string[]; disconnected: string[] }> {
  const out = { lost: [] as string[], disconnected: [] as string[] };
  if (opts.lostAfterSeconds <= 0) return out;
  const cutoff = new Date(now.getTime() - opts.lostAfterSeconds * 1000);
  const stale = await db.agent.findMany({
    where: { revokedAt: null, lostAt: null, lastSeenAt: { lte: cutoff } },
    select: { id: true, status: true, connectedAt: true },
    orderBy: { lastSeenAt: 'asc' },
    take: LOST_BATCH,
  });
  for (const a of stale) {
    if (a.status === 'online') {
      if (await opts.connectedAnywhere(a.id)) continue;
      await markDisconnected(db, a.id, now, a.connectedAt);
      out.disconnected.push(a.id);
      continue;
    }
    const claimed = await db.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<
        { name: string; labels: unknown; lastSeenAt: Date; connectedAt: Date | null }[]
      >`
        UPDATE "agent" SET "lostAt" = ${now}
        WHERE "id" = ${a.id} AND "status" = 'offline' AND "revokedAt" IS NULL AND "lostAt" IS NULL
          AND "lastSeenAt" <= ${cutoff}
        RETURNING "name", "labels", "lastSeenAt", "connectedAt"`;
      const row = rows[0];
      if (!row) return false;
      const lastSeenAt = new Date(row.lastSeenAt);
      await appendAudit(
        tx,
        {
          actor: LOSS_WATCH,
          action: 'agent.lost',
          subjectType: 'agent',
          subjectId: a.id,
          data: {
            name: row.name,
            labels: labelsOf(row.labels),
            lastSeenAt: lastSeenAt.toISOString(),
            connectedAt: row.connectedAt ? new Date(row.connectedAt).toISOString() : null,
            goneSeconds: Math.floor((now.getTime() - lastSeenAt.getTime()) / 1000),
            lostAfterSeconds: opts.lostAfterSeconds,
          },
        },
        now,
      );
      return true;
    });
    if (claimed) out.lost.push(a.id);
  }
  return out;
}
