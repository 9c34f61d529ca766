/**
 * Turns approved work into signed jobs on the wire. Woken on approval, on agent connect, on execution
 * completion and by a safety-net timer; each pass asks the dispatch service for the next jobs of the agents
 * connected to *this* process (so replicas never send the same job), claims each request's wave as sent in one
 * transaction, emits `job:dispatch` for the whole wave at once and handles each agent's ack as it comes. A job id
 * runs at most once: the service hands each job out once, and the agent refuses ids it has seen.
 *
 * With several replicas, wake-ups that may concern agents connected elsewhere (approval, cancel, a finished
 * or lost job freeing a rollout slot) are also sent to the other replicas; housekeeping (expiry, agent_lost
 * after the grace period) runs only on the replica holding the leader lease (see cluster.ts).
 */
import type { JobEnvelope } from '@pyreach/protocol/job';
import type { Failure } from '@pyreach/protocol/common';
import type { Logger } from './logger';
import type { Runtime } from './runtime';

export const DISPATCH_ACK_TIMEOUT_MS = 10_000;

/** Wake-ups other replicas must hear: the work they free or create may belong to agents connected to them. */
const CLUSTER_WAKES = new Set(['approved', 'cancelled', 'job-finished', 'agent-lost']);

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
  /** Expires approvals and executions past their deadlines; in-flight jobs of agents gone past the grace period become agent_lost. */
  housekeeping(): Promise<void>;
}

export class Dispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private housekeeping: Promise<void> | null = null;

  constructor(
    private readonly rt: Runtime,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => {
      this.wake('timer');
      if (!this.rt.cluster.isLeader() || this.housekeeping) return;
      this.rt.cluster.countHousekeeping();
      this.log.debug({ replicaId: this.rt.env.replicaId }, 'housekeeping pass');
      this.housekeeping = this.rt.inflight
        .track(this.rt.services.dispatchPorts().housekeeping())
        .catch((err: unknown) => this.log.error({ err }, 'housekeeping failed'))
        .finally(() => (this.housekeeping = null));
    }, this.rt.env.dispatchIntervalMs);
    this.timer.unref();
    this.wake('start');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Coalesces wake-ups: at most one pass runs, and one more follows if woken meanwhile. */
  wake(why: string): void {
    if (this.stopped) return;
    if (CLUSTER_WAKES.has(why)) this.rt.cluster.broadcastWake(why);
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

  agentReady(_agentId: string): void {
    this.wake('agent-ready');
  }

  private async pass(why: string): Promise<void> {
    const connected = this.rt.agents.connectedAgentIds();
    if (connected.length === 0) return;
    const ports = this.rt.services.dispatchPorts();
    const jobs = await ports.nextJobs(connected);
    if (jobs.length) this.log.debug({ why, jobs: jobs.length }, 'dispatching');
    // The whole wave is emitted at once and its acks are not awaited here: the pass ends once the jobs are on the
    // sockets, so the next wave (a freed slot, another request) never waits behind one agent's ack timeout. Each
    // delivery is still tracked, so shutdown waits for the answers.
    for (const job of jobs) {
      void this.rt.inflight
        .track(this.deliver(ports, job))
        .catch((err: unknown) => this.log.error({ err, jobId: job.jobId }, 'job delivery failed'));
    }
  }

  /** Emits one claimed job and waits for the agent's ack; a refusal or no answer goes to `dispatchFailed`. */
  private async deliver(ports: DispatchPorts, job: PlannedJob): Promise<void> {
    const log = this.log.child({ jobId: job.jobId, requestId: job.requestId, agentId: job.agentId });
    const res = await this.rt.agents.dispatch(job.agentId, job.envelope, DISPATCH_ACK_TIMEOUT_MS);
    if (res.ok) {
      log.info('job dispatched');
      return;
    }
    log.warn({ code: res.error.code }, 'job dispatch not accepted');
    await ports.dispatchFailed(job, res);
  }
}
