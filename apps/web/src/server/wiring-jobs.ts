/**
 * Job-side wiring: the dispatcher's ports (plan approved requests, pick the next jobs per rollout, sign, claim)
 * and what happens after an agent's job event was applied (browser pushes, waking the dispatcher).
 */
import type { Failure } from '@pyreach/protocol/common';
import type { JobEvent } from '@pyreach/protocol/agent';
import type { ExecutionState } from '@pyreach/protocol/exec';
import * as agentsSvc from './services/agents';
import * as dispatchSvc from './services/dispatch';
import * as executionsSvc from './services/executions';
import type { SigningKeyPair } from './services/signing';
import type { DispatchPorts, PlannedJob } from './dispatcher';
import { Gate } from './gate';
import type { Runtime } from './runtime';

export interface JobEventPorts {
  apply(agentId: string, ev: JobEvent): Promise<'applied' | 'duplicate' | Failure>;
  applied(agentId: string, ev: JobEvent, outcome: 'applied' | 'duplicate'): void;
  dispatch: DispatchPorts;
}

/**
 * Agent reports applied at once. Each is an audited transaction and appends serialise on the audit lock anyway,
 * so more at once only wait inside the database holding pool connections: a wave of a thousand results (a
 * fan-out finishing) would take the whole pool, starve dispatch and the API, and fail transactions that wait
 * too long for a connection. Beyond this they wait here, in memory, in arrival order.
 */
const APPLY_CONCURRENCY = 4;

export function createJobEventPorts(rt: Runtime, signing: SigningKeyPair): JobEventPorts {
  const prisma = rt.db.prisma;
  const log = rt.log.child({ component: 'jobs' });
  const applyGate = new Gate(APPLY_CONCURRENCY);

  const dispatch: DispatchPorts = {
    async nextJobs(connected) {
      const here = new Set(connected);
      // 1. Approved requests become executions (guarded in the service: one replica wins).
      const approved = await prisma.injectionRequest.findMany({
        where: { state: 'approved' },
        select: { id: true },
        orderBy: { approvedAt: 'asc' },
        take: 50,
      });
      for (const r of approved) {
        try {
          await dispatchSvc.planExecutions(prisma, r.id);
          rt.ui.requestChanged(r.id, 'dispatching');
        } catch (err) {
          if ((err as { code?: string }).code !== 'INVALID_STATE') throw err;
        }
      }
      // 2. Per dispatching request, one wave: what its rollout allows now for agents connected to this process,
      //    signed and claimed queued → sent in one transaction; only what this replica claimed goes out.
      const dispatching = await prisma.injectionRequest.findMany({
        where: { state: 'dispatching' },
        select: { id: true },
        orderBy: { dispatchedAt: 'asc' },
        take: 200,
      });
      const jobs: PlannedJob[] = [];
      for (const req of dispatching) {
        const wave = await dispatchSvc.sendWave(prisma, req.id, signing, (agentId) => here.has(agentId));
        const after = await prisma.injectionRequest.findUnique({
          where: { id: req.id },
          select: { state: true },
        });
        if (after && after.state !== 'dispatching') rt.ui.requestChanged(req.id, after.state);
        for (const { execution: ex, envelope } of wave) {
          rt.ui.executionUpdate({ requestId: req.id, executionId: ex.id, state: 'sent' });
          jobs.push({
            jobId: ex.jobId,
            agentId: ex.agentId,
            requestId: req.id,
            executionId: ex.id,
            envelope,
          });
        }
      }
      return jobs;
    },
    async dispatchFailed(job, failure) {
      // A refusal in the ack is the agent's decision: audited, and the execution ends `refused` (some refusals,
      // e.g. a forged or replayed job, never come back as job events). A transport failure is audited too but
      // concludes nothing: the job stays `sent` until the agent reports or it expires at notAfter.
      log.warn(
        { jobId: job.jobId, agentId: job.agentId, code: failure.error.code },
        'agent did not accept a job',
      );
      const changed = await executionsSvc.recordDispatchRefusal(
        prisma,
        job.agentId,
        job.jobId,
        failure.error,
      );
      if (changed) {
        rt.ui.executionUpdate({
          requestId: job.requestId,
          executionId: changed.id,
          state: 'refused',
          errorCode: changed.errorCode,
        });
        rt.dispatcher.wake('job-finished');
      }
    },
    async housekeeping() {
      const r = await executionsSvc.expireOverdue(prisma);
      if (r.requests || r.executions) {
        log.info(r, 'expired overdue work');
        rt.ui.fleetChanged(null);
      }
      await sweepLostAgents();
    },
  };

  /**
   * Agents with jobs in flight and not seen for the grace period. Offline ones: their in-flight jobs become
   * agent_lost (markAgentLost re-checks the status, so an agent that came back on any replica keeps them).
   * Online ones that no replica holds a connection for were left behind by a replica that died without
   * recording the disconnect: recorded now (only if that connection is still the current one), and the grace
   * period starts from here.
   */
  async function sweepLostAgents(): Promise<void> {
    const now = new Date();
    const quiet = await prisma.agent.findMany({
      where: {
        lastSeenAt: { lte: new Date(now.getTime() - rt.env.agentGraceSeconds * 1000) },
        executions: { some: { state: { in: ['sent', 'staged', 'picked_up'] } } },
      },
      select: { id: true, status: true, connectedAt: true },
      take: 100,
    });
    for (const agent of quiet) {
      if (agent.status === 'online') {
        if (await rt.agents.isConnectedAnywhere(agent.id)) continue;
        log.info(
          { agentId: agent.id },
          'agent online in the database but connected to no replica: recording the disconnect',
        );
        await agentsSvc.markDisconnected(prisma, agent.id, now, agent.connectedAt);
        continue;
      }
      const lost = await executionsSvc.markAgentLost(prisma, agent.id, now);
      for (const ex of lost)
        rt.ui.executionUpdate({
          requestId: ex.requestId,
          executionId: ex.id,
          state: ex.state as ExecutionState,
          errorCode: ex.errorCode,
        });
      if (lost.length) {
        log.warn(
          { agentId: agent.id, executions: lost.length },
          'in-flight jobs of a vanished agent marked agent_lost',
        );
        rt.dispatcher.wake('agent-lost');
      }
    }
  }

  return {
    async apply(agentId, ev) {
      const outcome = await applyGate.run(() => executionsSvc.applyJobEvent(prisma, agentId, ev));
      if (typeof outcome === 'object') return { ok: false, error: outcome.error };
      return outcome;
    },
    applied(_agentId, ev, outcome) {
      if (outcome !== 'applied') return;
      void (async () => {
        const ex = await prisma.execution.findUnique({
          where: { jobId: ev.jobId },
          select: {
            id: true,
            requestId: true,
            state: true,
            errorCode: true,
            request: { select: { state: true } },
          },
        });
        if (!ex) return;
        if (ev.type === 'output')
          rt.ui.executionOutput({
            requestId: ex.requestId,
            executionId: ex.id,
            seq: ev.seq,
            chunk: ev.chunk,
          });
        rt.ui.executionUpdate({
          requestId: ex.requestId,
          executionId: ex.id,
          state: ex.state as ExecutionState,
          errorCode: ex.errorCode,
        });
        rt.ui.requestChanged(ex.requestId, ex.request.state);
        // A finished job frees a rollout slot.
        if (ev.type === 'result' || ev.type === 'refused') rt.dispatcher.wake('job-finished');
      })().catch((err: unknown) => log.error({ err, jobId: ev.jobId }, 'post-event push failed'));
    },
    dispatch,
  };
}
