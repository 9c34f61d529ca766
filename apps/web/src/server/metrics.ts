/**
 * The control plane's Prometheus metrics (prom-client), served on `GET /metrics` behind a bearer token
 * (PYREACH_METRICS_TOKEN; without it the path does not exist: 404). One Registry per ControlPlane, never
 * prom-client's global one, so several planes in one process (tests) keep their counts apart.
 *
 * Two kinds, by where the truth is:
 *  - read at scrape from the database (services/metrics.ts, one groupBy each): executions by state, agents by
 *    status, the audit chain's length, agents' outbox backlog. Cluster-wide: every replica answers the same, so
 *    aggregate them with max() across replicas, not sum();
 *  - this replica's own: agents connected here (sum() across replicas is the fleet), and the latency
 *    histograms, fed by the Publisher from the execution effects of the transitions that end a stage (each
 *    transition happens on exactly one replica, so these sum across replicas too).
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ExecutionState } from '@pyreach/protocol/states';
import type { Logger } from './logger';
import type { Effect } from './services/effects';
import type { MetricsSnapshot } from './services/metrics';

/** What the metrics read, at scrape time. */
export interface MetricsSource {
  /** Agents authenticated on this replica's /agents namespace. */
  connectedHere(): number;
  snapshot(): Promise<MetricsSnapshot>;
  isLeader(): boolean;
}

// From a fast local dispatch (ms) to a target that reaches a safe point only after a long C call (minutes).
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
// Approval waits count in the dispatch latency (planned → sent): minutes to hours.
const DISPATCH_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14_400];
const RUN_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900];

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly dispatch: Histogram;
  readonly pickup: Histogram;
  readonly run: Histogram<'state'>;
  private scrape: Promise<MetricsSnapshot> | null = null;

  constructor(
    private readonly source: MetricsSource,
    private readonly log: Logger,
  ) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'pyreach_web_' });
    this.dispatch = new Histogram({
      name: 'pyreach_execution_dispatch_latency_seconds',
      help: 'From an execution planned (queued) to its job sent to the agent; approvals held at dispatch count.',
      buckets: DISPATCH_BUCKETS,
      registers: [r],
    });
    this.pickup = new Histogram({
      name: 'pyreach_execution_pickup_latency_seconds',
      help: 'From a job sent to the agent to the target picking it up at a safe point (agent-reported time).',
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    this.run = new Histogram({
      name: 'pyreach_execution_run_seconds',
      help: 'From pick-up to the end of the job, by the state it ended in (the finish latency).',
      labelNames: ['state'],
      buckets: RUN_BUCKETS,
      registers: [r],
    });
    const read = (): Promise<MetricsSnapshot> => this.snapshot();
    new Gauge({
      name: 'pyreach_agents_connected',
      help: 'Agents authenticated on this replica (sum across replicas: the connected fleet).',
      registers: [r],
      collect() {
        this.set(source.connectedHere());
      },
    });
    new Gauge({
      name: 'pyreach_leader',
      help: '1 while this replica holds the leader lease (runs housekeeping).',
      registers: [r],
      collect() {
        this.set(source.isLeader() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pyreach_executions',
      help: 'Executions by state, counted at scrape (cluster-wide: max() across replicas).',
      labelNames: ['state'],
      registers: [r],
      async collect() {
        const s = await read();
        for (const state of ExecutionState.options) this.set({ state }, s.executionsByState[state] ?? 0);
      },
    });
    new Gauge({
      name: 'pyreach_agents',
      help: 'Enrolled agents by status (online/offline; revoked apart), from the database (cluster-wide).',
      labelNames: ['status'],
      registers: [r],
      async collect() {
        const s = await read();
        this.reset();
        for (const status of ['online', 'offline']) this.set({ status }, s.agentsByStatus[status] ?? 0);
        for (const [status, n] of Object.entries(s.agentsByStatus)) this.set({ status }, n);
        this.set({ status: 'revoked' }, s.agentsRevoked);
      },
    });
    let auditSeen = 0;
    new Counter({
      name: 'pyreach_audit_events_total',
      help: 'Audit events appended to the chain (its head sequence number, cluster-wide: max() across replicas; rate() is the append rate).',
      registers: [r],
      async collect() {
        const s = await read();
        // The chain only grows; a smaller head (a restored database) starts the count again.
        if (s.auditEvents < auditSeen) {
          this.reset();
          auditSeen = 0;
        }
        this.inc(s.auditEvents - auditSeen);
        auditSeen = s.auditEvents;
      },
    });
    const outbox = (name: string, help: string, pick: (s: MetricsSnapshot['outbox']) => number): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        async collect() {
          this.set(pick((await read()).outbox));
        },
      });
    };
    outbox(
      'pyreach_agent_outbox_depth',
      "Job events agents hold undelivered, summed over the fleet (from each agent's last heartbeat).",
      (o) => o.totalDepth,
    );
    outbox('pyreach_agent_outbox_depth_max', 'The largest outbox one agent holds.', (o) => o.maxDepth);
    outbox(
      'pyreach_agent_outbox_oldest_age_seconds',
      "Age of the oldest undelivered event of any agent (its heartbeat's age plus the time since); 0 when none.",
      (o) => o.oldestAgeSeconds,
    );
    outbox(
      'pyreach_agent_outbox_backlogged',
      'Agents whose oldest undelivered event is past the backlog threshold (as the dashboard flags them).',
      (o) => o.backloggedAgents,
    );
  }

  /** One database read per scrape, shared by every gauge that needs it. */
  private snapshot(): Promise<MetricsSnapshot> {
    this.scrape ??= this.source.snapshot().finally(() => setImmediate(() => (this.scrape = null)));
    return this.scrape;
  }

  /** The Publisher's hook: latency of the stage each execution transition ends. */
  observe(effects: readonly Effect[]): void {
    for (const e of effects) {
      if (e.kind !== 'execution' || !e.timings) continue;
      const t = e.timings;
      if (t.dispatchSeconds !== undefined) this.dispatch.observe(t.dispatchSeconds);
      if (t.pickupSeconds !== undefined) this.pickup.observe(t.pickupSeconds);
      if (t.runSeconds !== undefined) this.run.observe({ state: e.state }, t.runSeconds);
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /**
   * `GET /metrics`: 404 when no token is configured (the path does not exist), 401 without the right bearer
   * token (compared in constant time), 405 for other methods, the text format otherwise. A failing database read
   * answers 503 (Prometheus records the scrape as failed) and is logged.
   */
  async serve(req: IncomingMessage, res: ServerResponse, token: string | undefined): Promise<void> {
    const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-store',
        ...headers,
      });
      res.end(body);
    };
    req.resume();
    if (!token) return send(404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'GET only\n', { allow: 'GET, HEAD' });
    if (!bearerMatches(req.headers.authorization, token))
      return send(401, 'a bearer token (PYREACH_METRICS_TOKEN) is required\n', {
        'www-authenticate': 'Bearer realm="pyreach-metrics"',
      });
    try {
      const { contentType, body } = await this.render();
      res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      this.log.error({ err }, 'metrics scrape failed');
      send(503, 'metrics unavailable\n');
    }
  }
}

/** `Bearer <token>` equal to `expected`, compared as digests (constant time, whatever the lengths). */
export function bearerMatches(header: string | undefined, expected: string): boolean {
  const m = /^Bearer ([^\s]+)$/.exec(header ?? '');
  if (!m) return false;
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(expected));
}
