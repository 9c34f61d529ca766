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
import type { AnyJobEnvelope } from '@pyreach/protocol/job';
import type { Failure } from '@pyreach/protocol/common';
import type { Logger } from './logger';
import type { WakeSignal } from './publisher';
import type { Effect, Outcome, WakeReason } from './services/effects';
import type { HousekeepingReport, PlannedJob } from './services/jobs';

export const DISPATCH_ACK_TIMEOUT_MS = 10_000;

/** Wake-ups other replicas must hear: the work they free or create may belong to agents connected to them. */
const CLUSTER_WAKES = new Set<WakeReason>([
  'approved',
  'cancelled',
  'job-finished',
  'agent-lost',
  'inspect',
  'restore',
]);

/** What the dispatcher needs, and nothing more. */
export interface DispatcherPorts {
  /** Agents connected to this process: the only ones it sends to. */
  connectedAgentIds(): string[];
  /** Emits a signed job on the agent's connection and waits for its ack (or a timeout). */
  deliver(agentId: string, envelope: AnyJobEnvelope, timeoutMs: number): Promise<{ ok: true } | Failure>;
  /** Plans approved requests and claims the next wave of signed jobs for these agents (services/jobs.ts). */
  nextWave(connectedAgentIds: string[]): Promise<Outcome<PlannedJob[]>>;
  /** The agent refused a dispatch or did not answer. */
  dispatchFailed(job: PlannedJob, failure: Failure): Promise<Outcome<unknown>>;
  /** Expiry and the lost-agent sweep. */
  housekeeping(): Promise<Outcome<HousekeepingReport>>;
  /** After each commit: what changed, to the Publisher. */
  publish(effects: readonly Effect[]): void;
  /** Wake-ups from everyone else (the Publisher's signal). */
  wakes: WakeSignal;
  /** The leader lease and the cross-replica wake (a no-op single replica without Redis). */
  cluster: { isLeader(): boolean; countHousekeeping(): void; broadcastWake(why: string): void };
  /** Runs a piece of in-flight work so shutdown can wait for it. */
  track<T>(work: Promise<T>): Promise<T>;
  intervalMs: number;
  replicaId: string;
}

export class Dispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private housekeeping: Promise<void> | null = null;

  constructor(
    private readonly ports: DispatcherPorts,
    private readonly log: Logger,
  ) {
    ports.wakes.listen((why) => this.wake(why));
  }

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => {
      this.wake('timer');
      if (!this.ports.cluster.isLeader() || this.housekeeping) return;
      this.ports.cluster.countHousekeeping();
      this.log.debug({ replicaId: this.ports.replicaId }, 'housekeeping pass');
      this.housekeeping = this.ports
        .track(this.housekeep())
        .catch((err: unknown) => this.log.error({ err }, 'housekeeping failed'))
        .finally(() => (this.housekeeping = null));
    }, this.ports.intervalMs);
    this.timer.unref();
    this.wake('start');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Coalesces wake-ups: at most one pass runs, and one more follows if woken meanwhile. */
  wake(why: WakeReason): void {
    if (this.stopped) return;
    if (CLUSTER_WAKES.has(why)) this.ports.cluster.broadcastWake(why);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.ports
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

  private async housekeep(): Promise<void> {
    const { result: r, effects } = await this.ports.housekeeping();
    this.ports.publish(effects);
    if (r.expired.requests || r.expired.executions) this.log.info(r.expired, 'expired overdue work');
    for (const agentId of r.disconnected)
      this.log.info(
        { agentId },
        'agent online in the database but connected to no replica: recording the disconnect',
      );
    for (const agentId of r.agentsLost)
      this.log.warn(
        { agentId },
        'agent lost: gone longer than PYREACH_AGENT_LOST_AFTER_SECONDS (audited, notified)',
      );
    for (const l of r.lost)
      this.log.warn(
        { agentId: l.agentId, executions: l.executions },
        'in-flight jobs of a vanished agent marked agent_lost',
      );
  }

  private async pass(why: string): Promise<void> {
    const connected = this.ports.connectedAgentIds();
    if (connected.length === 0) return;
    const { result: jobs, effects } = await this.ports.nextWave(connected);
    this.ports.publish(effects);
    if (jobs.length) this.log.debug({ why, jobs: jobs.length }, 'dispatching');
    // The whole wave is emitted at once and its acks are not awaited here: the pass ends once the jobs are on the
    // sockets, so the next wave (a freed slot, another request) never waits behind one agent's ack timeout. Each
    // delivery is still tracked, so shutdown waits for the answers.
    for (const job of jobs) {
      void this.ports
        .track(this.deliver(job))
        .catch((err: unknown) => this.log.error({ err, jobId: job.jobId }, 'job delivery failed'));
    }
  }

  /** Emits one claimed job and waits for the agent's ack; a refusal or no answer goes to `dispatchFailed`. */
  private async deliver(job: PlannedJob): Promise<void> {
    const log = this.log.child({ jobId: job.jobId, requestId: job.requestId, agentId: job.agentId });
    const res = await this.ports.deliver(job.agentId, job.envelope, DISPATCH_ACK_TIMEOUT_MS);
    if (res.ok) {
      log.info('job dispatched');
      return;
    }
    // A refusal in the ack is the agent's decision; a transport failure concludes nothing (services/jobs.ts).
    log.warn({ code: res.error.code }, 'job dispatch not accepted');
    this.ports.publish((await this.ports.dispatchFailed(job, res)).effects);
  }
}
