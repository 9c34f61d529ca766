/**
 * The agent's health and metrics endpoint (the one port the agent listens on; loopback by default, the
 * DaemonSet binds it on the pod's network for the kubelet's probes and Prometheus):
 *
 *   GET /healthz  200 while the process runs and its event loop is responsive: the longest event-loop
 *                 stall seen in the last 30 s is below `livenessMaxLoopDelayMs` (a stalled agent neither
 *                 heartbeats nor takes jobs; a liveness failure restarts it). Never depends on the control
 *                 plane, so an outage there does not restart every agent of a cluster.
 *   GET /readyz   200 when connected (authenticated) to the control plane and the outbox holds at most
 *                 `readyMaxOutboxDepth` undelivered events; 503 with the failing check otherwise.
 *   GET /metrics  Prometheus text format (prom-client), own registry: connection, jobs by outcome, pickup
 *                 latency, outbox depth and oldest-item age, inventory size, pod watch, process defaults.
 *
 * Read-only, GET/HEAD only, no request body, small timeouts and a connection cap: nothing here can change
 * the agent, and nothing it answers is secret (counts and states, never code, output or ids of jobs).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEntry } from './audit';
import type { Engine } from './engine';
import type { KubeContext } from './k8s/enrich';

/** What the endpoint reads from the running service, at request time. */
export interface HealthSource {
  /** The service's connection state ('connected' = authenticated). */
  connectionState(): string;
  outboxDepth(): number;
  /** When the oldest undelivered outbox event was written (ISO time), or null when none waits. */
  outboxOldestAt(): string | null;
  inventorySize(): number;
  kube?: KubeContext | undefined;
}

/** The running service as the endpoint sees it (structural, so this module does not import the service). */
export function serviceHealthSource(
  svc: {
    connectionState: string;
    outbox: { depth(): number; nextPending(): { at: string } | null };
    inventory: { list(): unknown[] };
  },
  kube?: KubeContext,
): HealthSource {
  return {
    connectionState: () => svc.connectionState,
    outboxDepth: () => svc.outbox.depth(),
    outboxOldestAt: () => svc.outbox.nextPending()?.at ?? null,
    inventorySize: () => svc.inventory.list().length,
    kube,
  };
}

/** `host:port`, `[v6]:port` or `:port` (every interface); `off` → null. */
export function parseListen(s: string): { host: string | undefined; port: number } | null {
  if (s === 'off') return null;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(s);
  if (!m || Number(m[3]) > 65535)
    throw new Error(`health.listen: "${s}" is not host:port, [v6]:port, :port or off`);
  const host = m[1] ?? (m[2] || undefined);
  return { host, port: Number(m[3]) };
}

/** The longest event-loop stall over a sliding window, measured by a timer's lateness. */
export class LoopMonitor {
  private readonly samples: { at: number; delay: number }[] = [];
  private last = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly intervalMs = 500,
    private readonly windowMs = 30_000,
  ) {
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  private tick(): void {
    const now = Date.now();
    this.samples.push({ at: now, delay: Math.max(0, now - this.last - this.intervalMs) });
    this.last = now;
    while (this.samples.length && this.samples[0]!.at < now - this.windowMs) this.samples.shift();
  }

  /** Longest stall in the window, including one still in progress (a timer that is overdue now). */
  maxDelayMs(): number {
    const pending = Math.max(0, Date.now() - this.last - this.intervalMs);
    return Math.max(pending, ...this.samples.map((s) => s.delay));
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly jobs: Counter<'outcome' | 'code'>;
  readonly received: Counter;
  readonly pickup: Histogram;

  constructor(source: () => HealthSource | null) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'pyreach_agent_' });
    this.received = new Counter({
      name: 'pyreach_agent_jobs_received_total',
      help: 'Jobs accepted for running (signature, addressee, expiry and local policy passed).',
      registers: [r],
    });
    this.jobs = new Counter({
      name: 'pyreach_agent_jobs_total',
      help: 'Jobs ended, by outcome (engine status, or refused) and error code ("" when none).',
      labelNames: ['outcome', 'code'],
      registers: [r],
    });
    this.pickup = new Histogram({
      name: 'pyreach_agent_job_pickup_latency_seconds',
      help: 'From the engine starting a job to the target picking it up at a safe point.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [r],
    });
    const gauge = (name: string, help: string, read: (s: HealthSource) => number): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          const s = source();
          if (s) this.set(read(s));
        },
      });
    };
    gauge('pyreach_agent_connected', '1 while authenticated to the control plane.', (s) =>
      s.connectionState() === 'connected' ? 1 : 0,
    );
    gauge(
      'pyreach_agent_outbox_depth',
      'Job events written but not yet acknowledged by the control plane.',
      (s) => s.outboxDepth(),
    );
    gauge(
      'pyreach_agent_outbox_oldest_age_seconds',
      'Age of the oldest undelivered job event (0 when none waits).',
      (s) => {
        const at = s.outboxOldestAt();
        return at ? Math.max(0, (Date.now() - Date.parse(at)) / 1000) : 0;
      },
    );
    gauge('pyreach_agent_inventory_processes', 'Python processes in the inventory.', (s) =>
      s.inventorySize(),
    );
    gauge(
      'pyreach_agent_kubernetes_pods',
      'Pods of this node known from the pod watch.',
      (s) => s.kube?.watcher?.size ?? 0,
    );
    gauge(
      'pyreach_agent_kubernetes_watch_synced',
      '1 when the pod watch is synced; 0 when reconnecting, not started or unavailable.',
      (s) => (s.kube?.watcher?.state === 'synced' ? 1 : 0),
    );
  }

  /** Count jobs from the local audit log's entries (every refusal and every ending passes through it). */
  observeAudit(e: AuditEntry): void {
    if (e.event === 'received') this.received.inc();
    else if (e.event === 'refused') this.jobs.inc({ outcome: 'refused', code: String(e.code ?? '') });
    else if (e.event === 'finished' || e.event === 'recovered')
      this.jobs.inc({ outcome: String(e.outcome ?? 'unknown'), code: String(e.code ?? '') });
  }
}

/** The engine, timing each job from its start to the target's pick-up. */
export function instrumentEngine(
  engine: Engine,
  metrics: AgentMetrics,
  now: () => number = () => performance.now(),
): Engine {
  return {
    ...engine,
    runInTarget: (opts) => {
      const t0 = now();
      return engine.runInTarget({
        ...opts,
        onState: (s) => {
          if (s === 'picked_up') metrics.pickup.observe((now() - t0) / 1000);
          opts.onState?.(s);
        },
      });
    },
  };
}

export interface HealthServerOptions {
  listen: string;
  source: () => HealthSource | null;
  metrics: AgentMetrics;
  readyMaxOutboxDepth: number;
  livenessMaxLoopDelayMs: number;
  log: Logger;
  loop?: LoopMonitor;
}

export interface HealthServer {
  address: string;
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, type = 'application/json'): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function healthHandler(o: HealthServerOptions, loop: LoopMonitor) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, JSON.stringify({ error: 'only GET and HEAD' }));
    }
    const path = (req.url ?? '/').split('?')[0];
    const s = o.source();
    if (path === '/healthz') {
      const delay = loop.maxDelayMs();
      const ok = delay < o.livenessMaxLoopDelayMs;
      return send(
        res,
        ok ? 200 : 503,
        JSON.stringify({
          ok,
          eventLoopMaxDelayMs: delay,
          ...(ok
            ? {}
            : { reason: `the event loop stalled for ${delay} ms (limit ${o.livenessMaxLoopDelayMs} ms)` }),
        }),
      );
    }
    if (path === '/readyz') {
      const state = s?.connectionState() ?? 'starting';
      const depth = s?.outboxDepth() ?? 0;
      const connected = state === 'connected';
      const outboxOk = depth <= o.readyMaxOutboxDepth;
      const reasons = [
        ...(connected ? [] : [`not connected to the control plane (${state})`]),
        ...(outboxOk ? [] : [`outbox holds ${depth} undelivered events (limit ${o.readyMaxOutboxDepth})`]),
      ];
      return send(
        res,
        reasons.length ? 503 : 200,
        JSON.stringify({
          ready: reasons.length === 0,
          checks: {
            connection: { ok: connected, state },
            outbox: { ok: outboxOk, depth, max: o.readyMaxOutboxDepth },
          },
          ...(reasons.length ? { reasons } : {}),
        }),
      );
    }
    if (path === '/metrics') {
      try {
        return send(res, 200, await o.metrics.registry.metrics(), o.metrics.registry.contentType);
      } catch (err) {
        o.log.warn({ err }, 'metrics collection failed');
        return send(res, 500, JSON.stringify({ error: 'metrics collection failed' }));
      }
    }
    send(res, 404, JSON.stringify({ error: 'not found; try /healthz, /readyz or /metrics' }));
  };
}

/** Start the endpoint; resolves once it listens (rejects when the address is taken or invalid). */
export async function startHealthServer(o: HealthServerOptions): Promise<HealthServer | null> {
  const where = parseListen(o.listen);
  if (!where) return null;
  const loop = o.loop ?? new LoopMonitor();
  const handler = healthHandler(o, loop);
  const server: Server = createServer((req, res) => {
    // Nothing to read: a client that sends a body gets its answer and the body is discarded.
    req.resume();
    void handler(req, res);
  });
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  server.keepAliveTimeout = 5000;
  server.maxConnections = 32;
  server.maxHeadersCount = 32;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: where.port, ...(where.host ? { host: where.host } : {}) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.unref();
  const a = server.address() as AddressInfo;
  o.log.info({ address: a.address, port: a.port }, 'health server listening');
  return {
    address: a.address,
    port: a.port,
    close: () =>
      new Promise<void>((r) => {
        if (!o.loop) loop.stop();
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
