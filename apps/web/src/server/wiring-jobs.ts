/**
 * Job-side wiring: the dispatcher's ports (plan approved requests, pick the next jobs per rollout, sign, claim)
 * and what happens after an agent's job event was applied (browser pushes, waking the dispatcher).
 */
import type { Failure } from '@pyreach/protocol/common';
import type { JobEvent } from '@pyreach/protocol/agent';
import type { ExecutionState } from '@pyreach/protocol/exec';
import * as dispatchSvc from './services/dispatch';
import * as executionsSvc from './services/executions';
import type { SigningKeyPair } from './services/signing';
import type { DispatchPorts, PlannedJob } from './dispatcher';
import type { Runtime } from './runtime';

export interface JobEventPorts {
  apply(agentId: string, ev: JobEvent): Promise<'applied' | 'duplicate' | Failure>;
  applied(agentId: string, ev: JobEvent, outcome: 'applied' | 'duplicate'): void;
  dispatch: DispatchPorts;
}

export function createJobEventPorts(rt: Runtime, signing: SigningKeyPair): JobEventPorts {
  const prisma = rt.db.prisma;
  const log = rt.log.child({ component: 'jobs' });

  const dispatch: DispatchPorts = {
    async nextJobs(connected) {
      const here = new Set(connected);
      // 1. Approved requests become executions (guarded in the service: one replica wins).
      const approved = await prisma.injectionRequest.findMany({ where: { state: 'approved' }, select: { id: true }, orderBy: { approvedAt: 'asc' }, take: 50 });
      for (const r of approved) {
        try {
          await dispatchSvc.planExecutions(prisma, r.id);
          rt.ui.requestChanged(r.id, 'dispatching');
        } catch (err) {
          if ((err as { code?: string }).code !== 'INVALID_STATE') throw err;
        }
      }
      // 2. Per dispatching request, what its rollout allows now, for agents connected to this process.
      const dispatching = await prisma.injectionRequest.findMany({ where: { state: 'dispatching' }, orderBy: { dispatchedAt: 'asc' }, take: 200 });
      const jobs: PlannedJob[] = [];
      for (const req of dispatching) {
        const next = await dispatchSvc.nextJobs(prisma, req.id);
        const after = await prisma.injectionRequest.findUnique({ where: { id: req.id }, select: { state: true } });
        if (after && after.state !== 'dispatching') rt.ui.requestChanged(req.id, after.state);
        for (const ex of next) {
          if (!here.has(ex.agentId)) continue;
          const envelope = dispatchSvc.buildEnvelope(ex, req, signing);
          // Claim queued → sent; only the winner emits, so a job id goes out at most once.
          if (!(await dispatchSvc.markSent(prisma, ex.id, envelope))) continue;
          rt.ui.executionUpdate({ requestId: req.id, executionId: ex.id, state: 'sent' });
          jobs.push({ jobId: ex.jobId, agentId: ex.agentId, requestId: req.id, executionId: ex.id, envelope });
        }
      }
      return jobs;
    },
    async dispatchFailed(job, failure) {
      // The execution stays `sent`: the agent reports a refusal itself (job:event refused), and a job that
      // never arrives expires at notAfter. Recorded so operators can see the transport problem.
      log.warn({ jobId: job.jobId, agentId: job.agentId, code: failure.error.code }, 'agent did not accept a job');
    },
    async agentLost(agentId) {
      const lost = await executionsSvc.markAgentLost(prisma, agentId);
      for (const ex of lost) rt.ui.executionUpdate({ requestId: ex.requestId, executionId: ex.id, state: ex.state as ExecutionState, errorCode: ex.errorCode });
    },
    async housekeeping() {
      const r = await executionsSvc.expireOverdue(prisma);
      if (r.requests || r.executions) {
        log.info(r, 'expired overdue work');
        rt.ui.fleetChanged(null);
      }
    },
  };

  return {
    async apply(agentId, ev) {
      const outcome = await executionsSvc.applyJobEvent(prisma, agentId, ev);
      if (typeof outcome === 'object') return { ok: false, error: outcome.error };
      return outcome;
    },
    applied(_agentId, ev, outcome) {
      if (outcome !== 'applied') return;
      void (async () => {
        const ex = await prisma.execution.findUnique({ where: { jobId: ev.jobId }, select: { id: true, requestId: true, state: true, errorCode: true, request: { select: { state: true } } } });
        if (!ex) return;
        if (ev.type === 'output') rt.ui.executionOutput({ requestId: ex.requestId, executionId: ex.id, seq: ev.seq, chunk: ev.chunk });
        rt.ui.executionUpdate({ requestId: ex.requestId, executionId: ex.id, state: ex.state as ExecutionState, errorCode: ex.errorCode });
        rt.ui.requestChanged(ex.requestId, ex.request.state);
        // A finished job frees a rollout slot.
        if (ev.type === 'result' || ev.type === 'refused') rt.dispatcher.wake('job-finished');
      })().catch((err: unknown) => log.error({ err, jobId: ev.jobId }, 'post-event push failed'));
    },
    dispatch,
  };
}
