/**
 * The control plane's Prometheus metrics and readiness, against the REAL server process:
 *  - `/metrics` behind PYREACH_METRICS_TOKEN (no token configured: 404; a wrong, partial or misplaced token:
 *    401), scraped before and after a real execution (the real agent injecting into a real CPython 3.14
 *    target): executions by state, the dispatch/pickup/run histograms, the audit count and the agents move;
 *    the outbox gauges follow the agent rows;
 *  - readiness with Redis (the real one on 127.0.0.1:6379) reached through a small TCP proxy of this test:
 *    the proxy closed → /api/health/ready 503 NOT_READY naming redis while /api/health/live stays 200;
 *    reopened → 200 again, without restarting anything;
 *  - the two database roles as deploy/k8s runs them: `npm run -w apps/web migrate` as the owner (the init
 *    container), the runtime with only the application role's URL, the audit trail protected from it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { REPO_ROOT, startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { startPython, type PyTarget } from '../support/python';

const TOKEN = `metrics-${randomBytes(16).toString('hex')}`;

/** Prometheus text format → { 'name{labels}': value } (labels as printed). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

async function scrape(cp: ControlPlane, auth: string | null = `Bearer ${TOKEN}`, path = '/metrics') {
  const res = await fetch(cp.baseUrl + path, { headers: auth === null ? {} : { authorization: auth } });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

async function metricsOf(cp: ControlPlane): Promise<Map<string, number>> {
  const r = await scrape(cp);
  assert.equal(r.status, 200, r.text);
  return parseMetrics(r.text);
}

/** A TCP proxy in front of the real Redis that the test can close (dropping every connection) and reopen. */
class TcpProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly upstream: number) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const up = connect(this.upstream, '127.0.0.1');
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(up).pipe(client);
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : this.port;
    this.server = server;
  }

  /** Stops listening and cuts every connection: Redis is unreachable for the control plane. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('control-plane /metrics against a real execution', () => {
  let cp: ControlPlane;
  let operator: ApiClient;
  let approver: ApiClient;
  let agent: AgentProcess;
  let target: PyTarget;

  before(async () => {
    cp = await startControlPlane('postgres', { PYREACH_METRICS_TOKEN: TOKEN });
    const admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
    operator = await ApiClient.signIn(cp.baseUrl, USERS.operator);
    approver = await ApiClient.signIn(cp.baseUrl, USERS.approver);
    await admin.ok(
      admin.post('/api/policies', {
        name: 'metrics',
        matchLabels: { env: 'metrics' },
        priority: 50,
        requiredApprovals: 1,
        allowCustomCode: true,
      }),
    );
    const join = await admin.ok(
      admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'metrics' } }),
    );
    target = await startPython('idle.py', { style: 'host' });
    agent = new AgentProcess({ config: { server: cp.baseUrl, policy: { allowRoot: true } } });
    const enrolled = await agent.cli(['enroll', '--token', join.joinToken.token]);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    agent.start();
    await agent.waitForLog('authenticated', 60_000);
  });
  after(async () => {
    await agent?.kill('SIGKILL');
    await target?.kill();
    await cp?.cleanup();
  });

  it('answers only the configured bearer token: none, wrong, partial, misplaced and other schemes get 401', async () => {
    const bad: (string | null)[] = [
      null,
      'Bearer wrong-token-of-some-length',
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      `bearer  ${TOKEN}`,
      `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`,
      TOKEN,
      `Bearer ${TOKEN} ${TOKEN}`,
    ];
    for (const auth of bad) {
      const r = await scrape(cp, auth);
      assert.equal(r.status, 401, `${auth}: ${r.text}`);
      assert.doesNotMatch(r.text, /pyreach_/, 'no metric leaks with a refusal');
    }
    // In the query string it is not a credential either.
    assert.equal((await scrape(cp, null, `/metrics?token=${TOKEN}`)).status, 401);
    const post = await fetch(`${cp.baseUrl}/metrics`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(post.status, 405);
    const ok = await scrape(cp);
    assert.equal(ok.status, 200);
    assert.match(ok.type ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(ok.text, /^# TYPE pyreach_execution_dispatch_latency_seconds histogram$/m);
  });

  it('moves with a real execution: executions by state, latency histograms, audit count, agents', async () => {
    const before = await metricsOf(cp);
    assert.equal(before.get('pyreach_agents_connected'), 1);
    assert.equal(before.get('pyreach_agents{status="online"}'), 1);
    assert.equal(before.get('pyreach_executions{state="succeeded"}'), 0);
    assert.equal(before.get('pyreach_execution_dispatch_latency_seconds_count'), 0);
    const audit0 = before.get('pyreach_audit_events_total')!;
    assert.ok(audit0 > 0, 'enrolment and sign-ins are audited');

    const p = await eventually('the target in the fleet', async () => {
      const r = await operator.ok(
        operator.get<{ processes: { pid: number; startTime: string; agentId: string }[] }>(
          '/api/fleet/processes?limit=10000',
        ),
      );
      return r.processes.find((x) => x.pid === target.pid);
    });
    const created = await operator.ok(
      operator.post<{ request: { id: string } }>('/api/requests', {
        kind: 'custom',
        code: 'print("metrics")\nresult = 1\n',
        targets: {
          type: 'processes',
          processes: [{ agentId: p.agentId, pid: p.pid, startTime: p.startTime }],
        },
        reason: 'metrics: one real execution',
      }),
    );
    // Custom code always needs a person's approval.
    await approver.ok(
      approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve', comment: 'ok' }),
    );
    let last = '';
    await eventually(
      'the request to succeed',
      async () => {
        const r = await operator.ok(
          operator.get<{ request: { state: string } }>(`/api/requests/${created.request.id}`),
        );
        last = JSON.stringify(r).slice(0, 3000);
        return r.request.state === 'succeeded';
      },
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${last}\n${agent.logs().slice(-3000)}`);
    });

    const after = await metricsOf(cp);
    assert.equal(after.get('pyreach_executions{state="succeeded"}'), 1);
    assert.equal(after.get('pyreach_executions{state="queued"}'), 0);
    assert.equal(after.get('pyreach_execution_dispatch_latency_seconds_count'), 1);
    assert.equal(after.get('pyreach_execution_pickup_latency_seconds_count'), 1);
    assert.equal(after.get('pyreach_execution_run_seconds_count{state="succeeded"}'), 1);
    const pickup = after.get('pyreach_execution_pickup_latency_seconds_sum')!;
    assert.ok(pickup >= 0 && pickup < 60, `pickup ${pickup} s`);
    // Created, dispatched, staged, picked up, finished, completed: the chain grew by at least that much.
    assert.ok(after.get('pyreach_audit_events_total')! >= audit0 + 4, 'audit appends counted');
    assert.equal(after.get('pyreach_agent_outbox_depth'), 0);
    assert.ok((after.get('pyreach_web_process_resident_memory_bytes') ?? 0) > 0, 'process defaults');
  });

  it("follows the agents' outbox backlog and status from their rows", async () => {
    await agent.kill('SIGKILL');
    await eventually('the agent offline', async () => {
      const m = await metricsOf(cp);
      return m.get('pyreach_agents_connected') === 0 && m.get('pyreach_agents{status="offline"}') === 1;
    });
    // What the agent's last heartbeat said before it went quiet: 7 events waiting, the oldest 200 s ago.
    await cp.db!.prisma.agent.updateMany({
      data: { outboxDepth: 7, outboxOldestAgeSeconds: 200, lastSeenAt: new Date() },
    });
    const m = await metricsOf(cp);
    assert.equal(m.get('pyreach_agent_outbox_depth'), 7);
    assert.equal(m.get('pyreach_agent_outbox_depth_max'), 7);
    assert.ok(m.get('pyreach_agent_outbox_oldest_age_seconds')! >= 200);
    assert.equal(m.get('pyreach_agent_outbox_backlogged'), 1);
  });

  it('is ready without Redis configured, and says so', async () => {
    const r = await fetch(`${cp.baseUrl}/api/health/ready`);
    const body = (await r.json()) as { ok: boolean; ready: boolean; checks: Record<string, unknown> };
    assert.equal(r.status, 200);
    assert.equal(body.ready, true);
    assert.deepEqual(body.checks.redis, { configured: false, ok: true });
  });
});

describe('control-plane readiness follows Redis (through a TCP proxy to the real one)', () => {
  let cp: ControlPlane;
  const proxy = new TcpProxy(6379);
  const prefix = `cp-metrics-${randomBytes(4).toString('hex')}`;

  const ready = async () => {
    const r = await fetch(`${cp.baseUrl}/api/health/ready`, { signal: AbortSignal.timeout(5000) });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };
  const live = async () => (await fetch(`${cp.baseUrl}/api/health/live`)).status;

  before(async () => {
    await proxy.open();
    cp = await startControlPlane('postgres', {
      REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
      PYREACH_REDIS_PREFIX: prefix,
      PYREACH_READY_TIMEOUT_MS: '500',
    });
  });
  after(async () => {
    await cp?.cleanup();
    await proxy.close();
    const redis = createClient({ url: 'redis://127.0.0.1:6379' });
    redis.on('error', () => undefined);
    await redis.connect();
    for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 100 }))
      if (keys.length) await redis.del(keys);
    await redis.close();
  });

  it('is ready with Redis answering, 503 naming redis when it is gone (liveness stays 200), ready again when back', async () => {
    const up = await ready();
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body.ready, true);
    assert.equal(up.body.checks.redis.configured, true);
    assert.equal(up.body.checks.redis.ok, true);
    assert.equal(up.body.checks.database.ok, true);
    assert.equal(await live(), 200);

    await proxy.close();
    const down = await eventually('readiness to fail', async () => {
      const r = await ready();
      return r.status === 503 ? r : null;
    });
    assert.equal(down.body.ok, false);
    assert.equal(down.body.error.code, 'NOT_READY');
    assert.match(down.body.error.message, /^not ready: redis: /);
    assert.doesNotMatch(down.body.error.message, /database/, 'only the failing check is named');
    assert.equal(down.body.error.details.checks.redis.ok, false);
    assert.equal(down.body.error.details.checks.database.ok, true);
    assert.doesNotMatch(JSON.stringify(down.body), new RegExp(String(proxy.port)), 'no address leaks');
    assert.equal(await live(), 200, 'liveness never depends on Redis');
    // The legacy /api/health (database only) is unaffected.
    assert.equal((await fetch(`${cp.baseUrl}/api/health`)).status, 200);

    await proxy.open();
    await eventually('readiness to recover', async () => (await ready()).status === 200, 20_000);
    assert.equal(await live(), 200);
  });

  it('has no /metrics without a token configured', async () => {
    const r = await fetch(`${cp.baseUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 404);
    assert.doesNotMatch(await r.text(), /pyreach_/);
  });
});

describe('two database roles as the Kubernetes manifests run them', () => {
  let cp: ControlPlane;
  before(async () => {
    // The owner migrates (the init container: `npm run -w apps/web migrate`); the runtime gets only the app
    // role's URL (an empty DATABASE_MIGRATION_URL is unset).
    cp = await startControlPlane('postgres', { DATABASE_MIGRATION_URL: '' }, { roles: 'separate' });
  });
  after(async () => {
    await cp?.cleanup();
  });

  it('the migrate command runs as the owner and exits; the runtime with only the app role serves, audit protected', async () => {
    const r = spawnSync(join(REPO_ROOT, 'node_modules/.bin/tsx'), ['scripts/migrate.ts'], {
      cwd: join(REPO_ROOT, 'apps/web'),
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATABASE_URL: cp.db!.location,
        DATABASE_MIGRATION_URL: cp.db!.ownerLocation,
      },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /"msg":"migrations done".*"auditProtection":"protected"/);
    assert.doesNotMatch(r.stdout + r.stderr, /postgres(ql)?:\/\//, 'no URL (password) printed');
    const bad = spawnSync(join(REPO_ROOT, 'node_modules/.bin/tsx'), ['scripts/migrate.ts'], {
      cwd: join(REPO_ROOT, 'apps/web'),
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: 'mysql://x' },
      encoding: 'utf8',
    });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /DATABASE_URL/);

    assert.equal(cp.env.DATABASE_MIGRATION_URL, '');
    const health = (await (await fetch(`${cp.baseUrl}/api/health`)).json()) as {
      audit: { protection: string };
    };
    assert.equal(health.audit.protection, 'protected');
    assert.equal((await fetch(`${cp.baseUrl}/api/health/ready`)).status, 200);
  });
});
