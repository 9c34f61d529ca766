/**
 * Turns approved work into signed jobs on the wire. Woken on approval, on agent connect, on execution
 * completion and by a safety-net timer; each pass asks the dispatch service for the next jobs of the agents
 * connected to *this* process (so replicas never send the same job), marks them sent, emits `job:dispatch`
 * and waits for the agent's ack. A job id runs at most once: the service hands each job out once, and the
 * agent refuses ids it has seen.
 */
import type { JobEnvelope } from '@pyreach/protocol/job';
import type { Failure } from '@pyreach/protocol/common';
import type { Logger } from './logger';
import type { Runtime } from './runtime';

export const DISPATCH_ACK_TIMEOUT_MS = 10_000;

export interface PlannedJob {
  jobId: string;
  agentId: string;
  requestId: string;
  executionId: string;
  envelope: JobEnvelope;
}

export interface DispatchPorts {
  /** Plans executions of approved requests and returns signed jobs, already marked sent, for these agents. */
  nextJobs(connectedAgentIds: string[]): Promise<PlannedJob[]>;
  /** The agent answered the dispatch with an error (or did not answer). */
  dispatchFailed(job: PlannedJob, failure: Failure): Promise<void>;
  agentLost(agentId: string): Promise<void>;
  /** Expires approvals and executions past their deadlines. */
  housekeeping(): Promise<void>;
}

export class Dispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly rt: Runtime,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => {
      this.wake('timer');
      void this.rt.inflight.track(this.rt.services.dispatchPorts().housekeeping()).catch((err: unknown) => this.log.error({ err }, 'housekeeping failed'));
    }, this.rt.env.dispatchIntervalMs);
    this.timer.unref();
    this.wake('start');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
  }

  /** Coalesces wake-ups: at most one pass runs, and one more follows if woken meanwhile. */
  wake(why: string): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.rt.inflight
      .track(this.pass(why))
      .catch((err: unknown) => this.log.error({ err, why }, 'dispatch pass failed'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.wake('again');
        }
      });
  }

  agentReady(agentId: string): void {
    const t = this.graceTimers.get(agentId);
    if (t) {
      clearTimeout(t);
      this.graceTimers.delete(agentId);
    }
    this.wake('agent-ready');
  }

  /** After the grace period, jobs in flight on an agent that did not come back become agent_lost. */
  agentGone(agentId: string): void {
    if (this.stopped) return;
    const previous = this.graceTimers.get(agentId);
    if (previous) clearTimeout(previous);
    const t = setTimeout(() => {
      this.graceTimers.delete(agentId);
      if (this.rt.agents.isConnected(agentId) || this.stopped) return;
      void this.rt.inflight
        .track(this.rt.services.dispatchPorts().agentLost(agentId))
        .then(() => this.wake('agent-lost'))
        .catch((err: unknown) => this.log.error({ err, agentId }, 'marking agent_lost failed'));
    }, this.rt.env.agentGraceSeconds * 1000);
    t.unref();
    this.graceTimers.set(agentId, t);
  }

  private async pass(why: string): Promise<void> {
    const connected = this.rt.agents.connectedAgentIds();
    if (connected.length === 0) return;
    const ports = this.rt.services.dispatchPorts();
    const jobs = await ports.nextJobs(connected);
    if (jobs.length) this.log.debug({ why, jobs: jobs.length }, 'dispatching');
    await Promise.all(
      jobs.map(async (job) => {
        const log = this.log.child({ jobId: job.jobId, requestId: job.requestId, agentId: job.agentId });
        const res = await this.rt.agents.dispatch(job.agentId, job.envelope, DISPATCH_ACK_TIMEOUT_MS);
        if (res.ok) {
          log.info('job dispatched');
          return;
        }
        log.warn({ code: res.error.code }, 'job dispatch not accepted');
        await ports.dispatchFailed(job, res);
      }),
    );
  }
}
