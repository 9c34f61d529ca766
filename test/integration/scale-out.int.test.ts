/**
 * Two control-plane replicas (real server processes) sharing one fresh PostgreSQL database and the real Redis
 * (a key prefix of their own), behind a tiny TCP load balancer written here that sends every new connection
 * to the first replica that accepts it (A, then B). The real agent (apps/agent) with a real CPython 3.14
 * target dials the balancer and lands on A; requests are created and approved through B's HTTP API and their
 * results watched by a browser-side socket.io client on B's /ui. Then A is SIGKILLed with a job in flight: the
 * agent moves to B, the job completes exactly once, and the next request runs on B. Housekeeping runs on the
 * replica holding the leader lease only, and the lease moves to B when A dies.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket as NetSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createClient } from 'redis';
import { io as ioClient, type Socket } from 'socket.io-client';
import { createTestDatabase, type TestDatabase } from '@pyreach/db/testing';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { startPython, type PyTarget } from '../support/python';
import { eventually } from '../support/eventually';

type Exec = {
  id: string;
  jobId: string;
  state: string;
  errorCode: string | null;
  output?: string | null;
  result?: unknown;
};
type Req = { id: string; state: string; executions?: Exec[] };
type UiEvent = { event: string; data: { requestId?: string; state?: string; executionId?: string } };

/** Forwards each new TCP connection to the first target that accepts it, in order; records where each went. */
class TcpBalancer {
  readonly routed: number[] = [];
  private readonly sockets = new Set<NetSocket>();
  private server: Server | null = null;
  port = 0;

  constructor(private readonly targets: number[]) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => client.destroy());
      client.pause();
      const tryTarget = (i: number) => {
        if (i >= this.targets.length) {
          client.destroy();
          return;
        }
        const upstream = createConnection({ host: '127.0.0.1', port: this.targets[i]! });
        let connected = false;
        upstream.once('error', () => {
          if (!connected) tryTarget(i + 1);
        });
        upstream.once('connect', () => {
          connected = true;
          this.routed.push(this.targets[i]!);
          this.sockets.add(upstream);
          upstream.on('close', () => {
            this.sockets.delete(upstream);
            client.destroy();
          });
          upstream.on('error', () => upstream.destroy());
          client.on('close', () => upstream.destroy());
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        });
      };
      tryTarget(0);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

const logLines = (cp: ControlPlane): Record<string, unknown>[] =>
  cp
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
const logged = (cp: ControlPlane, msg: string, extra: Record<string, unknown> = {}) =>
  logLines(cp).filter((l) => l.msg === msg && Object.entries(extra).every(([k, v]) => l[k] === v));

describe('control plane scale-out: two replicas, one Redis, one database', { timeout: 300_000 }, () => {
  const prefix = `pyreach-test-${randomBytes(6).toString('hex')}`;
  const secretDir = mkdtempSync(join(tmpdir(), 'pyreach-scale-'));
  let db: TestDatabase;
  let redis: ReturnType<typeof createClient>;
  let a: ControlPlane, b: ControlPlane;
  let lb: TcpBalancer;
  let agent: AgentProcess;
  let target: PyTarget;
  let operator: ApiClient, approver: ApiClient, admin: ApiClient;
  let ui: Socket;
  const uiEvents: UiEvent[] = [];
  const files: string[] = [];

  const sideEffect = (name: string) => {
    const f = join(secretDir, `${name}.txt`);
    files.push(f);
    return f;
  };
  const appendCode = (file: string, extra = '') =>
    `with open(${JSON.stringify(file)}, "a") as f:\n    f.write("ran\\n")\n${extra}`;
  const lines = (file: string) =>
    existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
  const agentId = (): string =>
    (JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')) as { agentId: string }).agentId;
  const getReq = async (id: string) =>
    (await operator.ok(operator.get<{ request: Req }>(`/api/requests/${id}`))).request;
  const leaseHolder = () => redis.get(`${prefix}:leader`);
  const uiSaw = (requestId: string, event: string, state: string) =>
    uiEvents.some((e) => e.event === event && e.data.requestId === requestId && e.data.state === state);

  const approvedOnB = async (code: string, reason: string): Promise<{ req: Req; approvedAt: number }> => {
    const p = await eventually('the target in the fleet', async () => {
      const r = await operator.ok(
        operator.get<{ processes: { pid: number; startTime: string; agentId: string }[] }>(
          '/api/fleet/processes?limit=10000',
        ),
      );
      return r.processes.find((x) => x.pid === target.pid);
    });
    const created = await operator.ok(
      operator.post<{ request: Req }>('/api/requests', {
        kind: 'custom',
        code,
        targets: {
          type: 'processes',
          processes: [{ agentId: p.agentId, pid: p.pid, startTime: p.startTime }],
        },
        reason,
      }),
    );
    assert.equal(
      (await ui.timeout(5000).emitWithAck('subscribe', { requestId: created.request.id })).ok,
      true,
    );
    const approvedAt = Date.now();
    await approver.ok(
      approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve', comment: 'ok' }),
    );
    return { req: created.request, approvedAt };
  };

  before(async () => {
    db = await createTestDatabase('postgres', { poolSize: 2 });
    redis = createClient({ url: 'redis://127.0.0.1:6379' });
    redis.on('error', () => undefined);
    await redis.connect();
    const shared = {
      DATABASE_URL: db.location,
      REDIS_URL: 'redis://127.0.0.1:6379',
      PYREACH_REDIS_PREFIX: prefix,
      // Both replicas sign jobs with the one key the agent pins, and accept each other's session cookies.
      PYREACH_SIGNING_KEY_FILE: join(secretDir, 'signing.pem'),
      BETTER_AUTH_SECRET: randomBytes(32).toString('hex'),
      PYREACH_LEADER_LEASE_MS: '3000',
      // Long safety-net timer: a job reaching the other replica's agent quickly proves the cross-replica wake.
      PYREACH_DISPATCH_INTERVAL_MS: '3000',
      PYREACH_AGENT_GRACE_SECONDS: '5',
      LOG_LEVEL: 'debug',
    };
    // A first (it creates the signing key and takes the lease), then B.
    a = await startControlPlane('pglite', { ...shared, PYREACH_REPLICA_ID: 'replica-a' });
    b = await startControlPlane('pglite', { ...shared, PYREACH_REPLICA_ID: 'replica-b' });
    lb = new TcpBalancer([a.port, b.port]);
    await lb.start();

    [admin, operator, approver] = (await Promise.all(
      [USERS.admin, USERS.operator, USERS.approver].map((u) => ApiClient.signIn(b.baseUrl, u)),
    )) as [ApiClient, ApiClient, ApiClient];
    await admin.ok(
      admin.post('/api/policies', {
        name: 'scale',
        matchLabels: { env: 'scale' },
        priority: 100,
        requiredApprovals: 1,
        allowCustomCode: true,
        approverRoles: ['approver', 'admin'],
      }),
    );
    const token = (
      await admin.ok(
        admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'scale' } }),
      )
    ).joinToken.token;

    // The browser: signed in on B, live on B's /ui.
    ui = ioClient(`${b.baseUrl}/ui`, {
      transports: ['websocket'],
      extraHeaders: { cookie: operator.cookie! },
      reconnection: false,
      forceNew: true,
    });
    ui.onAny((event: string, data: UiEvent['data']) => uiEvents.push({ event, data }));
    await new Promise<void>((resolve, reject) => {
      ui.once('connect', () => resolve());
      ui.once('connect_error', reject);
    });

    target = await startPython('idle.py', { style: 'host' });
    agent = new AgentProcess({
      config: { server: `http://127.0.0.1:${lb.port}`, policy: { allowRoot: true } },
    });
    const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=scale']);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    agent.start();
    await agent.waitForLog('authenticated', 30_000);
  });

  after(async () => {
    if (process.env.PYREACH_TEST_DUMP) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(`${process.env.PYREACH_TEST_DUMP}.agent`, agent?.logs() ?? '');
      writeFileSync(`${process.env.PYREACH_TEST_DUMP}.a`, a?.logs() ?? '');
      writeFileSync(`${process.env.PYREACH_TEST_DUMP}.b`, b?.logs() ?? '');
    }
    ui?.close();
    await agent?.kill('SIGKILL');
    await target?.kill();
    await lb?.close();
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    await db?.cleanup();
    if (redis?.isOpen) {
      for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 100 }))
        if (keys.length) await redis.del(keys);
      await redis.close();
    }
    for (const f of files) rmSync(f, { force: true });
    rmSync(secretDir, { recursive: true, force: true });
  });

  test('the agent is on replica A, and only A (the lease holder) runs housekeeping', async () => {
    assert.equal(lb.routed[0], a.port, 'the balancer pins to A first');
    await eventually(
      'A to record the agent',
      () => logged(a, 'agent authenticated', { agentId: agentId() }).length > 0,
    );
    assert.equal(logged(b, 'agent authenticated').length, 0);
    assert.equal(await leaseHolder(), 'replica-a');
    await eventually('a housekeeping pass on A', () => logged(a, 'housekeeping pass').length >= 2, 15_000);
    assert.equal(logged(b, 'housekeeping pass').length, 0, 'B never ran housekeeping while A held the lease');
    assert.equal(logged(b, 'leader lease acquired').length, 0);
  });

  test('a request approved on B reaches the agent on A at once; the browser on B sees the result', async () => {
    const file = sideEffect('first');
    const { req, approvedAt } = await approvedOnB(
      appendCode(file, 'print("hello from A")\nresult = {"n": 1}\n'),
      'scale-out: approve on B',
    );
    await eventually(
      'the job to be sent',
      async () =>
        ['sent', 'staged', 'picked_up', 'succeeded'].includes(
          (await getReq(req.id)).executions?.[0]?.state ?? '',
        ),
      15_000,
    );
    const reached = Date.now() - approvedAt;
    assert.ok(
      reached < 2500,
      `dispatch took ${reached} ms: the safety-net timer (3 s), not the cross-replica wake`,
    );
    assert.ok(
      logged(a, 'dispatch wake from another replica', { why: 'remote:approved' }).length > 0,
      'A was woken by B',
    );
    await eventually(
      'the browser on B to see the request succeed',
      () => uiSaw(req.id, 'request:changed', 'succeeded'),
      30_000,
    );
    assert.ok(uiSaw(req.id, 'execution:update', 'succeeded'));
    const done = await getReq(req.id);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.executions![0]!.output, 'hello from A\n');
    assert.equal(lines(file), 1);
  });

  test('A killed with a job in flight: the agent moves to B, the job completes exactly once, the lease moves to B', async () => {
    const file = sideEffect('in-flight');
    const { req } = await approvedOnB(
      appendCode(file, 'import time\nprint("start")\ntime.sleep(3)\nprint("end")\nresult = "ok"\n'),
      'scale-out: kill A mid-job',
    );
    await eventually(
      'picked up',
      async () => (await getReq(req.id)).executions?.[0]?.state === 'picked_up',
      30_000,
    );
    const routedBefore = lb.routed.length;
    a.proc.kill('SIGKILL');
    await new Promise((r) => a.proc.once('exit', r));

    await eventually(
      'the agent to reconnect to B',
      () =>
        lb.routed.slice(routedBefore).includes(b.port) &&
        logged(b, 'agent authenticated', { agentId: agentId() }).length > 0,
      30_000,
    );
    const done = await eventually(
      'the in-flight job to finish on B',
      async () => {
        const r = await getReq(req.id);
        return r.state === 'succeeded' && r;
      },
      60_000,
    );
    const ex = done.executions![0]!;
    assert.equal(ex.output, 'start\nend\n', 'each output chunk applied exactly once');
    assert.equal(ex.result, 'ok');
    assert.equal(lines(file), 1, 'the code ran exactly once');
    await eventually(
      'the browser on B to see it',
      () => uiSaw(req.id, 'request:changed', 'succeeded'),
      10_000,
    );
    const trail = await admin.ok(
      admin.get<{ events: { action: string }[] }>(`/api/audit?subjectId=${ex.id}&limit=100`),
    );
    assert.equal(trail.events.filter((e) => e.action === 'execution.result').length, 1);
    assert.equal(
      trail.events.filter((e) => e.action === 'execution.agent_lost').length,
      0,
      'moving replicas is not losing the agent',
    );

    await eventually('the lease to move to B', async () => (await leaseHolder()) === 'replica-b', 15_000);
    await eventually('housekeeping on B', () => logged(b, 'housekeeping pass').length > 0, 15_000);
  });

  test('after the move, a new request runs on B and the agent is online there', async () => {
    const file = sideEffect('after');
    const { req } = await approvedOnB(
      appendCode(file, 'print("hello from B")\n'),
      'scale-out: after the move',
    );
    await eventually(
      'the browser on B to see success',
      () => uiSaw(req.id, 'request:changed', 'succeeded'),
      30_000,
    );
    const done = await getReq(req.id);
    assert.equal(done.executions![0]!.output, 'hello from B\n');
    assert.equal(lines(file), 1);
    const agents = await admin.ok(admin.get<{ agents: { id: string; status: string }[] }>('/api/agents'));
    assert.equal(agents.agents.find((x) => x.id === agentId())?.status, 'online');
    // Past the grace period, with A's connection never closed cleanly: still nothing marked lost.
    await new Promise((r) => setTimeout(r, 6000));
    const all = await admin.ok(
      admin.get<{ events: { action: string }[] }>('/api/audit?action=execution.agent_lost&limit=10'),
    );
    assert.equal(all.events.length, 0);
  });
});
