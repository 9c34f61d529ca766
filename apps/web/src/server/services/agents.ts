import { createHash, randomBytes } from 'node:crypto';
import { publicKeyFromPem } from '@pyreach/protocol/job';
import { CreateJoinToken, isBacklogged } from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import type { EnrollRequest } from '@pyreach/protocol/agent';
import { IN_FLIGHT_EXECUTION_STATES } from '@pyreach/protocol/states';
import type { Agent, Db, PrismaClient } from '@pyreach/db';
import { requireUser, SYSTEM, type Actor } from './actor';
import { appendAudit } from './audit';
import { outcome, type Outcome } from './effects';
import { AppError, parseInput } from './errors';
import { newId } from './ids';
import { labelsOf } from './rows';

/**
 * An agent row with its labels parsed; the public key stays out of what the API shows. The outbox's oldest
 * age is the heartbeat's plus the time since (a wedged or silent agent's backlog keeps ageing), and `backlog`
 * flags it past OUTBOX_BACKLOG_SECONDS (protocol api.ts, the one rule the dashboard shows too). Labels are the
 * join token's (they decide policy); what the agent claims is kept apart as `reportedLabels`.
 */
export function agentOf(row: Agent, now: Date = new Date()) {
  const { publicKey: _publicKey, labels, reportedLabels, ...rest } = row;
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
    ...outbox,
    backlog: isBacklogged(outbox),
  };
}
export type AgentView = ReturnType<typeof agentOf>;

export const JOIN_TOKEN_PREFIX = 'pyrjt_';

export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface CreatedJoinToken {
  id: string;
  /** The clear token: shown once, never stored. */
  token: string;
  expiresAt: Date;
  labels: Labels;
}

/**
 * Creates a one-time join token (admin only). The clear token (`pyrjt_` + 32 random bytes, base64url) is returned once;
 * the database keeps its SHA-256. `labels` are forced onto the agent that enrols with it.
 */
export async function createJoinToken(
  db: PrismaClient,
  actor: Actor,
  body: CreateJoinToken,
  now: Date = new Date(),
): Promise<CreatedJoinToken> {
  const user = requireUser(actor, 'agent:manage');
  const input = parseInput(CreateJoinToken, body, 'join token');
  const ttl = input.ttlMinutes ?? 60;
  // A fixed prefix: base64url can start with '-', which a CLI reads as an option (`--token -x…` is refused
  // as ambiguous, about one token in 64), and a recognisable prefix lets secret scanners find leaked tokens.
  const token = `${JOIN_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const id = newId('jt');
  const expiresAt = new Date(now.getTime() + ttl * 60_000);
  const labels = input.labels ?? {};
  await db.$transaction(async (tx) => {
    await tx.joinToken.create({
      data: {
        id,
        tokenHash: hashJoinToken(token),
        labels,
        note: input.note ?? null,
        expiresAt,
        createdById: user.id,
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'agent.join_token.create',
        subjectType: 'join_token',
        subjectId: id,
        data: { labels, expiresAt: expiresAt.toISOString(), note: input.note ?? null },
      },
      now,
    );
  });
  return { id, token, expiresAt, labels };
}

/**
 * Enrols an agent: the token must exist, be unexpired and unused; it is consumed atomically (a conditional
 * update, so two agents racing with one token cannot both win). The labels that decide policy are the token's
 * only; what the agent claims is kept as `reportedLabels` (shown, never matched). The public key must be Ed25519. Failures are UNAUTHENTICATED with one message
 * that does not tell an attacker which check failed.
 */
export async function enrollAgent(
  db: PrismaClient,
  req: EnrollRequest,
  now: Date = new Date(),
): Promise<Outcome<Agent>> {
  try {
    publicKeyFromPem(req.publicKey);
  } catch {
    throw new AppError('VALIDATION', 'publicKey is not an Ed25519 SPKI PEM');
  }
  const refused = (why: string) =>
    new AppError('UNAUTHENTICATED', `enrolment refused: ${why}`, {
      userMessage: 'join token is invalid, expired or already used',
    });
  const tokenHash = hashJoinToken(req.token);
  const agent = await db.$transaction(async (tx) => {
    const token = await tx.joinToken.findUnique({ where: { tokenHash } });
    if (!token) throw refused('unknown token');
    if (token.usedAt) throw refused(`token ${token.id} already used`);
    if (token.expiresAt <= now) throw refused(`token ${token.id} expired`);
    const id = newId('ag');
    const consumed = await tx.joinToken.updateMany({
      where: { id: token.id, usedAt: null, expiresAt: { gt: now } },
      data: { usedAt: now, usedByAgentId: id },
    });
    if (consumed.count !== 1) throw refused(`token ${token.id} consumed concurrently`);
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
      },
    });
    await appendAudit(
      tx,
      {
        actor: { type: 'agent', id, name: req.hostname },
        action: 'agent.enroll',
        subjectType: 'agent',
        subjectId: id,
        data: { joinTokenId: token.id, labels, reportedLabels: req.labels, version: req.agentVersion },
      },
      now,
    );
    return agent;
  });
  return outcome(agent, [{ kind: 'fleet', hostId: null }]);
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
    const updated = await tx.agent.update({
      where: { id: agentId },
      data: { revokedAt: now, revokedReason: reason, status: 'offline' },
    });
    const lost = await tx.execution.updateMany({
      where: { agentId, state: { in: [...IN_FLIGHT_EXECUTION_STATES] } },
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
        action: 'agent.revoke',
        subjectType: 'agent',
        subjectId: agentId,
        data: { reason, lostExecutions: lost.count },
      },
      now,
    );
    return updated;
  });
  // After the commit: the agent is told and dropped everywhere; it is refused at every later handshake.
  return outcome(agentOf(revoked), [
    { kind: 'agent-revoked', agentId, reason },
    { kind: 'fleet', hostId: null },
  ]);
}

/** One agent, or NOT_FOUND. */
export async function getAgent(db: Db, agentId: string): Promise<AgentView> {
  const agent = await db.agent.findUnique({ where: { id: agentId } });
  if (!agent)
    throw new AppError('NOT_FOUND', `agent ${agentId} not found`, { userMessage: 'agent not found' });
  return agentOf(agent);
}

/** Agents, newest enrolment first. Revoked ones only when asked. */
export async function listAgents(
  db: Db,
  filter: { status?: 'online' | 'offline'; includeRevoked?: boolean } = {},
): Promise<AgentView[]> {
  const agents = await db.agent.findMany({
    where: {
      ...(filter.status ? { status: filter.status } : {}),
      ...(filter.includeRevoked ? {} : { revokedAt: null }),
    },
    orderBy: { enrolledAt: 'desc' },
  });
  return agents.map((a) => agentOf(a));
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
      data: { status: 'online', connectedAt: now, lastSeenAt: now },
    });
    await appendAudit(
      tx,
      {
        actor: { type: 'agent', id: agentId, name: agent.name },
        action: 'agent.connect',
        subjectType: 'agent',
        subjectId: agentId,
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
