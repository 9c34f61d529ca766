/**
 * The health and metrics endpoint in-process (a real HTTP server on a free loopback port); the whole agent
 * is scraped in test/integration/agent-health.int.test.ts.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { AgentConfig } from '../src/config';
import {
  AgentMetrics,
  instrumentEngine,
  LoopMonitor,
  parseListen,
  startHealthServer,
  type HealthServer,
  type HealthSource,
} from '../src/health';
import type { Engine } from '../src/engine';

const log = pino({ level: 'silent' });
const state = { conn: 'connecting', depth: 0, oldest: null as string | null, procs: 3 };
const source: HealthSource = {
  connectionState: () => state.conn,
  outboxDepth: () => state.depth,
  outboxOldestAt: () => state.oldest,
  inventorySize: () => state.procs,
};
const metrics = new AgentMetrics(() => source);
const loop = new LoopMonitor(50, 2000);
const servers: HealthServer[] = [];
after(async () => {
  loop.stop();
  for (const s of servers) await s.close();
});

async function server(monitor = loop): Promise<string> {
  const s = await startHealthServer({
    listen: '127.0.0.1:0',
    source: () => source,
    metrics,
    readyMaxOutboxDepth: 10,
    livenessMaxLoopDelayMs: 400,
    log,
    loop: monitor,
  });
  assert.ok(s);
  servers.push(s);
  return `http://127.0.0.1:${s.port}`;
}

describe('health endpoint', () => {
  it('defaults to loopback only and parses every listen form', () => {
    assert.equal(AgentConfig.parse({}).health.listen, '127.0.0.1:9476');
    assert.deepEqual(parseListen('127.0.0.1:9476'), { host: '127.0.0.1', port: 9476 });
    assert.deepEqual(parseListen(':9476'), { host: undefined, port: 9476 });
    assert.deepEqual(parseListen('[::1]:9'), { host: '::1', port: 9 });
    assert.equal(parseListen('off'), null);
    assert.throws(() => parseListen('9476'), /not host:port/);
    assert.equal(AgentConfig.safeParse({ health: { listen: 'localhost' } }).success, false);
  });

  it('is ready only when connected and the outbox is below its limit, and says which check fails', async () => {
    const url = await server();
    state.conn = 'disconnected';
    let res = await fetch(`${url}/readyz`);
    assert.equal(res.status, 503);
    assert.deepEqual(((await res.json()) as { reasons: string[] }).reasons, [
      'not connected to the control plane (disconnected)',
    ]);
    state.conn = 'connected';
    res = await fetch(`${url}/readyz`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { ready: boolean }).ready, true);
    state.depth = 11;
    res = await fetch(`${url}/readyz`);
    assert.equal(res.status, 503);
    assert.deepEqual(((await res.json()) as { reasons: string[] }).reasons, [
      'outbox holds 11 undelivered events (limit 10)',
    ]);
    state.depth = 0;
  });

  it('serves Prometheus text with connection, outbox, inventory and job metrics', async () => {
    const url = await server();
    state.conn = 'connected';
    state.depth = 2;
    state.oldest = new Date(Date.now() - 5000).toISOString();
    metrics.observeAudit({ at: '', event: 'received' });
    metrics.observeAudit({ at: '', event: 'finished', outcome: 'succeeded' });
    metrics.observeAudit({ at: '', event: 'refused', code: 'POLICY_ROOT_TARGET' });
    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /^pyreach_agent_connected 1$/m);
    assert.match(text, /^pyreach_agent_outbox_depth 2$/m);
    assert.match(text, /^pyreach_agent_outbox_oldest_age_seconds (4\.\d+|5(\.\d+)?)$/m);
    assert.match(text, /^pyreach_agent_inventory_processes 3$/m);
    assert.match(text, /^pyreach_agent_jobs_received_total 1$/m);
    assert.match(text, /^pyreach_agent_jobs_total\{outcome="succeeded",code=""\} 1$/m);
    assert.match(text, /^pyreach_agent_jobs_total\{outcome="refused",code="POLICY_ROOT_TARGET"\} 1$/m);
    assert.match(text, /^pyreach_agent_kubernetes_watch_synced 0$/m);
    assert.match(text, /^pyreach_agent_process_resident_memory_bytes \d+$/m);
  });

  it('times the pickup of every job the engine runs', async () => {
    const fake: Engine = {
      discover: async () => [],
      runInTarget: async (o) => {
        o.onState?.('staged');
        await new Promise((r) => setTimeout(r, 30));
        o.onState?.('picked_up');
        return { status: 'succeeded', output: '' };
      },
    };
    const seen: string[] = [];
    await instrumentEngine(fake, metrics).runInTarget({ pid: 1, code: '', onState: (s) => seen.push(s) });
    assert.deepEqual(seen, ['staged', 'picked_up'], 'the job still sees its states');
    const text = await metrics.registry.metrics();
    assert.match(text, /^pyreach_agent_job_pickup_latency_seconds_count 1$/m);
    assert.match(text, /^pyreach_agent_job_pickup_latency_seconds_bucket\{le="0.01"\} 0$/m);
    assert.match(text, /^pyreach_agent_job_pickup_latency_seconds_bucket\{le="0.05"\} 1$/m);
  });

  it('answers only GET and HEAD, and 404 elsewhere', async () => {
    const url = await server();
    const post = await fetch(`${url}/readyz`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`${url}/`)).status, 404);
    const head = await fetch(`${url}/healthz`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  it('refuses an address that is taken', async () => {
    const first = servers[0]!;
    await assert.rejects(
      startHealthServer({
        listen: `127.0.0.1:${first.port}`,
        source: () => source,
        metrics: new AgentMetrics(() => source),
        readyMaxOutboxDepth: 1,
        livenessMaxLoopDelayMs: 1000,
        log,
      }),
      /EADDRINUSE/,
    );
  });
  // Last: the stall is process-wide, every monitor sees it.
  it('is live while the event loop answers, and not after it stalled past the limit', async () => {
    const own = new LoopMonitor(50, 2000);
    after(() => own.stop());
    const url = await server(own);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const end = Date.now() + 600;
    while (Date.now() < end); // a stall, as a runaway synchronous task would cause
    const res = await fetch(`${url}/healthz`);
    assert.equal(res.status, 503);
    assert.match(
      ((await res.json()) as { reason: string }).reason,
      /the event loop stalled for \d+ ms \(limit 400 ms\)/,
    );
  });
});
