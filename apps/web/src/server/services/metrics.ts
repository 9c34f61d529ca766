/**
 * What a Prometheus scrape reads from the database (server/metrics.ts turns it into gauges): executions and
 * agents counted by state with one groupBy each, the audit chain's head, and the agents' outbox backlog as
 * their heartbeats reported it. Cluster-wide (every replica reads the same rows), read at scrape time only.
 */
import type { PrismaClient } from '@pyreach/db';
import { isBacklogged } from '@pyreach/protocol/api';

export interface MetricsSnapshot {
  executionsByState: Record<string, number>;
  /** Enrolled, not revoked agents by status (online/offline); revoked ones apart. */
  agentsByStatus: Record<string, number>;
  agentsRevoked: number;
  /** Audit events in the chain: its head's sequence number (0 before the first). */
  auditEvents: number;
  outbox: {
    /** Undelivered job events over every agent, and the largest one agent holds. */
    totalDepth: number;
    maxDepth: number;
    /** Age of the oldest waiting event of any agent (heartbeat's age + time since that heartbeat), 0 when none. */
    oldestAgeSeconds: number;
    /** Agents whose oldest waiting event is past OUTBOX_BACKLOG_SECONDS (protocol's isBacklogged, as the dashboard flags it). */
    backloggedAgents: number;
  };
}

export async function metricsSnapshot(db: PrismaClient, now: Date): Promise<MetricsSnapshot> {
  const [executions, agents, revoked, head, waiting] = await Promise.all([
    db.execution.groupBy({ by: ['state'], _count: { _all: true } }),
    db.agent.groupBy({ by: ['status'], where: { revokedAt: null }, _count: { _all: true } }),
    db.agent.count({ where: { revokedAt: { not: null } } }),
    db.auditEvent.aggregate({ _max: { seq: true } }),
    db.agent.findMany({
      where: { revokedAt: null, outboxDepth: { gt: 0 } },
      select: { outboxDepth: true, outboxOldestAgeSeconds: true, lastSeenAt: true },
    }),
  ]);
  let totalDepth = 0;
  let maxDepth = 0;
  let oldestAgeSeconds = 0;
  let backloggedAgents = 0;
  for (const a of waiting) {
    totalDepth += a.outboxDepth;
    maxDepth = Math.max(maxDepth, a.outboxDepth);
    if (a.outboxOldestAgeSeconds === null) continue;
    const since = a.lastSeenAt ? Math.max(0, Math.floor((now.getTime() - a.lastSeenAt.getTime()) / 1000)) : 0;
    const age = a.outboxOldestAgeSeconds + since;
    oldestAgeSeconds = Math.max(oldestAgeSeconds, age);
    if (isBacklogged({ outboxDepth: a.outboxDepth, outboxOldestAgeSeconds: age })) backloggedAgents++;
  }
  return {
    executionsByState: Object.fromEntries(executions.map((g) => [g.state, g._count._all])),
    agentsByStatus: Object.fromEntries(agents.map((g) => [g.status, g._count._all])),
    agentsRevoked: revoked,
    auditEvents: Number(head._max.seq ?? 0n),
    outbox: { totalDepth, maxDepth, oldestAgeSeconds, backloggedAgents },
  };
}
