/**
 * The dispatcher's rules (which requests to plan, what to send now, what an agent's refusal means, expiry and
 * the lost-agent sweep), as services: the database work and what it changed. The dispatcher (../dispatcher.ts)
 * only times them and puts the signed jobs on the wire.
 */
import type { Failure } from '@pyreach/protocol/common';
import type { AnyJobEnvelope } from '@pyreach/protocol/job';
import { IN_FLIGHT_EXECUTION_STATES } from '@pyreach/protocol/states';
import type { PrismaClient } from '@pyreach/db';
import { declareLostAgents, markDisconnected } from './agents';
import { planExecutions, sendWave, type AgentVersionOf, type DispatchKeys } from './dispatch';
import { outcome, type Effect, type Outcome } from './effects';
import { AppError } from './errors';
import { expireOverdue, markAgentLost, recordDispatchRefusal, TRANSPORT_FAILURES } from './executions';
import { claimInspections, expireInspections, inspectionDispatchRefused, isInspectionJob } from './inspect';
import { claimRestoreRuns, expireRestoreRuns, isRestoreJob, restoreDispatchRefused } from './restore';

/** A signed job claimed as sent, to emit on the agent's connection: an execution's, or an inspection's (both null). */
export interface PlannedJob {
  jobId: string;
  agentId: string;
  requestId: string | null;
  executionId: string | null;
  envelope: AnyJobEnvelope;
}

/** Approved requests planned per pass, and dispatching requests stepped per pass (oldest first). */
const PLAN_BATCH = 50;
const WAVE_BATCH = 200;

/**
 * One dispatch pass's database work: approved requests become executions (guarded in planExecutions: one
 * replica wins), then per dispatching request one wave — what its rollout allows now for the agents connected to
 * this process, gated (policy again, attested votes), signed in the envelope version each agent announced and
 * claimed queued → sent in one transaction. Inspections of these agents come first (a person waits for each,
 * and they run no code). Only what this replica claimed comes back.
 */
export async function nextWave(
  db: PrismaClient,
  keys: DispatchKeys,
  connectedAgentIds: readonly string[],
  now: () => Date = () => new Date(),
  versionOf: AgentVersionOf = () => 1,
): Promise<Outcome<PlannedJob[]>> {
  const here = new Set(connectedAgentIds);
  const effects: Effect[] = [];
  const jobs: PlannedJob[] = [];
  const inspections = await claimInspections(db, connectedAgentIds, versionOf, now());
  effects.push(...inspections.effects);
  for (const i of inspections.result)
    jobs.push({
      jobId: i.jobId,
      agentId: i.agentId,
      requestId: null,
      executionId: null,
      envelope: i.envelope,
    });
  // Follow-ups of changes that undo themselves (the check at expiry, "Restore now"): signed from the approved
  // request's content when due, claimed once (services/restore.ts).
  const restores = await claimRestoreRuns(db, keys, connectedAgentIds, versionOf, now());
  effects.push(...restores.effects);
  for (const r of restores.result)
    jobs.push({
      jobId: r.jobId,
      agentId: r.agentId,
      requestId: r.requestId,
      executionId: null,
      envelope: r.envelope,
    });
  const approved = await db.injectionRequest.findMany({
    where: { state: 'approved' },
    select: { id: true },
    orderBy: { approvedAt: 'asc' },
    take: PLAN_BATCH,
  });
  for (const r of approved) {
    try {
      effects.push(...(await planExecutions(db, r.id, undefined, now())).effects);
    } catch (err) {
      // Another replica (or pass) planned it first.
      if (!(err instanceof AppError && err.code === 'INVALID_STATE')) throw err;
    }
  }
  const dispatching = await db.injectionRequest.findMany({
    where: { state: 'dispatching' },
    select: { id: true },
    orderBy: { dispatchedAt: 'asc' },
    take: WAVE_BATCH,
  });
  for (const req of dispatching) {
    const wave = await sendWave(db, req.id, keys, (agentId) => here.has(agentId), now(), versionOf);
    effects.push(...wave.effects);
    for (const { execution: ex, envelope } of wave.result)
      jobs.push({ jobId: ex.jobId, agentId: ex.agentId, requestId: req.id, executionId: ex.id, envelope });
  }
  return outcome(jobs, effects);
}

/**
 * The agent answered a dispatch with an error, or did not answer. A refusal is the agent's decision: audited,
 * and the execution ends `refused` (some refusals, e.g. a forged or replayed job, never come back as job
 * events). A transport failure is audited too but concludes nothing: the job stays `sent` until the agent
 * reports or it expires at notAfter.
 */
export async function dispatchFailed(
  db: PrismaClient,
  job: Pick<PlannedJob, 'agentId' | 'jobId'>,
  failure: Failure,
  now: Date = new Date(),
): Promise<Outcome<{ refused: boolean }>> {
  if (isInspectionJob(job.jobId)) {
    const i = await inspectionDispatchRefused(
      db,
      job.agentId,
      job.jobId,
      failure.error,
      TRANSPORT_FAILURES.has(failure.error.code),
      now,
    );
    return outcome({ refused: i.result }, i.effects);
  }
  if (isRestoreJob(job.jobId)) {
    const r = await restoreDispatchRefused(
      db,
      job.agentId,
      job.jobId,
      failure.error,
      TRANSPORT_FAILURES.has(failure.error.code),
      now,
    );
    return outcome({ refused: r.result }, r.effects);
  }
  const r = await recordDispatchRefusal(db, job.agentId, job.jobId, failure.error, now);
  return outcome({ refused: r.result !== null }, r.effects);
}

export interface HousekeepingPorts {
  /** Whether the agent holds an authenticated connection on any replica. */
  connectedAnywhere(agentId: string): Promise<boolean>;
  /** Seconds an agent may be gone before its in-flight jobs are lost. */
  agentGraceSeconds: number;
  /** Seconds an agent may be gone before it is declared lost (`agent.lost`, notified once); 0: never. */
  agentLostAfterSeconds?: number;
}

export interface HousekeepingReport {
  expired: { requests: number; executions: number; inspections: number; restores: number };
  /** Agents recorded as disconnected because no replica held their connection. */
  disconnected: string[];
  /** Agents whose in-flight jobs became agent_lost, with how many. */
  lost: { agentId: string; executions: number }[];
  /** Agents declared lost (audited `agent.lost`, notified) in this pass. */
  agentsLost: string[];
}

/** Expiry, then the lost-agent sweep (run by one replica: the leader). */
export async function housekeeping(
  db: PrismaClient,
  ports: HousekeepingPorts,
  now: Date = new Date(),
): Promise<Outcome<HousekeepingReport>> {
  const expired = await expireOverdue(db, now);
  const inspections = await expireInspections(db, now);
  const restores = await expireRestoreRuns(db, now);
  const swept = await sweepLostAgents(db, ports, now);
  const gone = await declareLostAgents(
    db,
    { lostAfterSeconds: ports.agentLostAfterSeconds ?? 0, connectedAnywhere: ports.connectedAnywhere },
    now,
  );
  return outcome(
    {
      expired: { ...expired.result, inspections: inspections.result, restores: restores.result },
      disconnected: [...new Set([...swept.result.disconnected, ...gone.disconnected])],
      lost: swept.result.lost,
      agentsLost: gone.lost,
    },
    [...expired.effects, ...inspections.effects, ...restores.effects, ...swept.effects],
  );
}

/**
 * Agents with jobs in flight and not seen for the grace period. Offline ones: their in-flight jobs become
 * agent_lost (markAgentLost re-checks the status, so an agent that came back on any replica keeps them).
 * Online ones that no replica holds a connection for were left behind by a replica that died without
 * recording the disconnect: recorded now (only if that connection is still the current one), and the grace
 * period starts from here.
 */
export async function sweepLostAgents(
  db: PrismaClient,
  ports: HousekeepingPorts,
  now: Date = new Date(),
): Promise<Outcome<Pick<HousekeepingReport, 'disconnected' | 'lost'>>> {
  const quiet = await db.agent.findMany({
    where: {
      lastSeenAt: { lte: new Date(now.getTime() - ports.agentGraceSeconds * 1000) },
      executions: { some: { state: { in: [...IN_FLIGHT_EXECUTION_STATES] } } },
    },
    select: { id: true, status: true, connectedAt: true },
    take: 100,
  });
  const report: Pick<HousekeepingReport, 'disconnected' | 'lost'> = { disconnected: [], lost: [] };
  const effects: Effect[] = [];
  for (const agent of quiet) {
    if (agent.status === 'online') {
      if (await ports.connectedAnywhere(agent.id)) continue;
      await markDisconnected(db, agent.id, now, agent.connectedAt);
      report.disconnected.push(agent.id);
      continue;
    }
    const lost = await markAgentLost(db, agent.id, now);
    if (lost.result.length) report.lost.push({ agentId: agent.id, executions: lost.result.length });
    effects.push(...lost.effects);
  }
  return outcome(report, effects);
}
