/**
 * Control-plane scale benchmark: one real server process (apps/web/server.ts, API-only, PostgreSQL) holding
 * 1,000 / 5,000 / 10,000 authenticated simulated agents (bench/fanout-sim.ts, 4 child processes, websocket
 * transport, each agent with its own Ed25519 key, enrolled through the services with one join token each),
 * heartbeating every 15 s like the real agent. Reports the server's resident memory and CPU per minute at each
 * size, and — at 1,000 agents, and again at 10,000 when that size is measured — the fan-out: a single-target
 * request (the baseline, measured in the same run) and one approved request with 1,000 targets per rollout
 * concurrency given (a fresh request each): approval → each agent's receipt of `job:dispatch` (the agents
 * report success at once, so the rollout's in-flight limit keeps moving) and approval → the request's end
 * (`completedAt`, the server's own clock on the same machine). Each fan-out row is also printed as one line of
 * JSON: {"agents","targets","concurrency","dispatchP50Ms","dispatchP99Ms","requestEndMs","singleTargetEndMs",
 * "ratio"} with ratio = requestEndMs / singleTargetEndMs. Loopback only; every wait is bounded; everything
 * started is stopped.
 *
 *   node --import tsx bench/fanout.ts [--sizes 1000,5000,10000] [--window 30] [--concurrency 100,1000] [--no-write]
 *   node --import tsx bench/fanout.ts --fanout-only [--agents 1000|10000] [--concurrency 100,1000]   # writes nothing
 *
 * Writes the `## Control plane: scale` section of docs/benchmarks.md. Raises its own open-file limit.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io as ioClient, type Socket } from 'socket.io-client';
import { createTestDatabase } from '@pyreach/db/testing';
import { TERMINAL_REQUEST_STATES, type RequestState } from '@pyreach/protocol/states';
import { createJoinToken, enrollAgent } from '../apps/web/src/server/services/agents';
import { ApiClient } from '../test/support/api';
import { startControlPlane, USERS, type ControlPlane } from '../test/support/control-plane';
import { BENCHMARKS_DOC, writeSection } from './support';

const FD_LIMIT = 65536;
const here = path.dirname(fileURLToPath(import.meta.url));

// A server holding 10,000 sockets needs more descriptors than the usual 1,024: re-run under a raised limit.
if (!process.env.PYREACH_BENCH_FD_RAISED) {
  const limit = (flag: string) =>
    spawnSync('sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).stdout.trim();
  const hard = limit('-Hn');
  const want = hard === 'unlimited' ? FD_LIMIT : Math.min(FD_LIMIT, Number(hard));
  if (Number(limit('-Sn')) < want) {
    const r = spawnSync(
      'bash',
      [
        '-c',
        `ulimit -n ${want} && exec "$@"`,
        'bash',
        process.execPath,
        ...process.execArgv,
        ...process.argv.slice(1),
      ],
      {
        stdio: 'inherit',
        env: { ...process.env, PYREACH_BENCH_FD_RAISED: '1' },
      },
    );
    process.exit(r.status ?? 1);
  }
}

const argOf = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const FANOUT_ONLY = process.argv.includes('--fanout-only');
/** Targets of the fan-out request: one per agent (a request names at most 1,000 processes). */
const FANOUT = Number(argOf('fanout') ?? 1000);
const SIZES = FANOUT_ONLY
  ? [Math.max(FANOUT, Number(argOf('agents') ?? FANOUT))]
  : (argOf('sizes') ?? '1000,5000,10000').split(',').map(Number);
/** Fleet sizes at which the fan-out is measured: the first that holds the targets, and 10,000 when reached. */
const FANOUT_AT = new Set(
  SIZES.filter((n, i) => n >= FANOUT && (n >= 10_000 || SIZES.findIndex((m) => m >= FANOUT) === i)),
);
/** Single-target requests per fan-out measurement; their median end time is the baseline of the ratio. */
const SINGLE_ROUNDS = 5;
const WINDOW_S = Number(argOf('window') ?? 30);
// A fan-out-only run has no heartbeat table to write.
const WRITE = !FANOUT_ONLY && !process.argv.includes('--no-write');
/** Rollout concurrencies to measure the fan-out with, one fresh request each (the ceiling is 1,000). */
const CONCURRENCY = (argOf('concurrency') ?? '100,1000').split(',').map(Number);
const SIMS = 4;
const HEARTBEAT_S = 15;
const DEADLINE = Date.now() + 25 * 60_000;

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
}
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const guard = (what: string) => {
  if (Date.now() > DEADLINE) throw new Error(`benchmark deadline passed during ${what}`);
};

interface Sim {
  proc: ChildProcess;
  jobs: { agentId: string; jobId: string; requestId: string; at: number }[];
  /** Result reports the server did not accept, by request: code → count. */
  refusedResults: Map<string, Map<string, number>>;
}

/** Database connections of the bench's own client; enrolment runs that many at once (more only queue, and a
 * transaction that waits too long for a connection fails on a loaded machine). */
const POOL = 4;
const db = await createTestDatabase('postgres', { poolSize: POOL });
let cp: ControlPlane | null = null;
const sims: Sim[] = [];
const rows: { agents: number; connectS: number; rssMb: number; cpuSPerMin: number }[] = [];
interface FanRow {
  agents: number;
  targets: number;
  concurrency: number;
  dispatchP50Ms: number;
  dispatchP99Ms: number;
  lastDispatchMs: number;
  requestEndMs: number;
  singleTargetEndMs: number;
  ratio: number;
  state: string;
}
const fans: FanRow[] = [];
const loadDuringFanout: string[] = [];
try {
  cp = await startControlPlane('pglite', {
    DATABASE_URL: db.location,
    PYREACH_DISPATCH_INTERVAL_MS: '2000',
    PYREACH_AGENT_GRACE_SECONDS: '30',
    NODE_ENV: 'production',
    BETTER_AUTH_SECRET: 'b'.repeat(64),
    PYREACH_SEED_FORCE: '1',
    LOG_LEVEL: 'warn',
  });
  const serverPid = cp.proc.pid!;
  const prisma = db.prisma;
  const adminUser = await prisma.user.findFirstOrThrow({ where: { email: USERS.admin } });
  const adminActor = {
    type: 'user' as const,
    id: adminUser.id,
    name: adminUser.email,
    role: 'admin' as const,
  };

  // Enrol every agent through the services (one join token each), keeping the private keys for the simulators.
  const max = Math.max(...SIZES);
  const t0 = performance.now();
  const agents: { agentId: string; privateKeyPem: string }[] = [];
  for (let base = 0; base < max; base += POOL) {
    guard('enrolment');
    const batch = await Promise.all(
      Array.from({ length: Math.min(POOL, max - base) }, async (_, i) => {
        const { publicKey, privateKey } = generateKeyPairSync('ed25519');
        const jt = await createJoinToken(prisma, adminActor, { labels: { env: 'bench' }, ttlMinutes: 60 });
        const { result: agent } = await enrollAgent(prisma, {
          v: 1,
          token: jt.token,
          publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          hostname: `sim-${base + i}`,
          labels: {},
          agentVersion: 'bench/0',
        });
        return {
          agentId: agent.id,
          privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        };
      }),
    );
    agents.push(...batch);
  }
  console.log(
    `enrolled ${agents.length} agents through the services in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  for (let i = 0; i < SIMS; i++) {
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fanout-sim.ts')], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const sim: Sim = { proc, jobs: [], refusedResults: new Map() };
    proc.on('message', (m: { type: string; ok?: boolean; code?: string } & Sim['jobs'][number]) => {
      if (m.type === 'job') sim.jobs.push(m);
      if (m.type === 'result-ack' && !m.ok) {
        const byCode = sim.refusedResults.get(m.requestId) ?? new Map<string, number>();
        byCode.set(m.code ?? 'NO_ACK', (byCode.get(m.code ?? 'NO_ACK') ?? 0) + 1);
        sim.refusedResults.set(m.requestId, byCode);
      }
    });
    sims.push(sim);
  }
  const connectSlice = (sim: Sim, slice: typeof agents) =>
    new Promise<{ ok: number; failed: number }>((resolve) => {
      const on = (m: { type: string; ok: number; failed: number }) => {
        if (m.type !== 'connected') return;
        sim.proc.off('message', on);
        resolve(m);
      };
      sim.proc.on('message', on);
      sim.proc.send({
        type: 'connect',
        url: cp!.baseUrl,
        agents: slice,
        heartbeatSeconds: HEARTBEAT_S,
        parallel: 10,
      });
    });

  let connected = 0;
  let rounds = 0;
  for (const size of SIZES) {
    guard(`connecting ${size}`);
    const add = agents.slice(connected, size);
    const tc = performance.now();
    const per = Math.ceil(add.length / SIMS);
    const results = await Promise.all(sims.map((s, i) => connectSlice(s, add.slice(i * per, (i + 1) * per))));
    const failed = results.reduce((n, r) => n + r.failed, 0);
    const connectS = (performance.now() - tc) / 1000;
    connected = size;
    console.log(`${size} agents connected (+${add.length} in ${connectS.toFixed(1)} s, ${failed} failed)`);
    if (failed > add.length / 100)
      throw new Error(`${failed} simulated agents failed to connect (3 attempts each)`);
    if (!FANOUT_ONLY) {
      // Settle, then measure one window of steady heartbeats.
      await sleep(Math.min(10_000, HEARTBEAT_S * 1000));
      const c0 = cpuSeconds(serverPid);
      await sleep(WINDOW_S * 1000);
      const cpu = ((cpuSeconds(serverPid) - c0) * 60) / WINDOW_S;
      const rss = rssMb(serverPid);
      rows.push({ agents: size, connectS, rssMb: rss, cpuSPerMin: cpu });
      console.log(
        `  ${size} agents: server RSS ${rss.toFixed(0)} MB, CPU ${cpu.toFixed(1)} s/min (${((cpu / 60) * 100).toFixed(1)}% of one core)`,
      );
    }

    if (FANOUT_AT.has(size)) {
      guard('fan-out');
      const [operator, approver] = await Promise.all([
        ApiClient.signIn(cp.baseUrl, USERS.operator),
        ApiClient.signIn(cp.baseUrl, USERS.admin),
      ]);
      // The request's end arrives as a push on /ui (polling a 1,000-execution request would load the server
      // being measured); its completedAt is then read once.
      const ui: Socket = ioClient(`${cp.baseUrl}/ui`, {
        transports: ['websocket'],
        extraHeaders: { cookie: operator.cookie! },
        reconnection: false,
        forceNew: true,
      });
      await new Promise<void>((resolve, reject) => {
        ui.once('connect', () => resolve());
        ui.once('connect_error', reject);
      });
      const ended = new Map<string, () => void>();
      ui.on('request:changed', (m: { requestId: string; state: RequestState }) => {
        if (TERMINAL_REQUEST_STATES.has(m.state)) ended.get(m.requestId)?.();
      });
      if (fans.length === 0)
        await approver.ok(
          approver.post('/api/policies', {
            name: 'bench',
            matchLabels: { env: 'bench' },
            priority: 100,
            requiredApprovals: 1,
            allowCustomCode: true,
            approverRoles: ['approver', 'admin'],
          }),
        );
      /** One approved request to the first `targets` agents: dispatch latencies and the request's end. */
      const fanOut = async (targets: number, concurrency: number) => {
        // Distinct pids per request: one execution per target process per request.
        const pidBase = 1000 + rounds++ * FANOUT;
        const processes = agents.slice(0, targets).map((a, i) => ({
          agentId: a.agentId,
          pid: pidBase + i,
          startTime: String(5000 + i),
        }));
        const created = await operator.ok(
          operator.post<{ request: { id: string } }>('/api/requests', {
            kind: 'custom',
            code: 'print("fan-out")',
            targets: { type: 'processes', processes },
            rollout: { concurrency, maxFailures: 1000 },
            reason: 'fan-out benchmark',
          }),
        );
        const requestId = created.request.id;
        const end = new Promise<void>((resolve) => ended.set(requestId, resolve));
        const joined = await ui.timeout(10_000).emitWithAck('subscribe', { requestId });
        if (!joined.ok) throw new Error(`could not subscribe to ${requestId}`);
        const approvedAt = Date.now();
        await approver.ok(
          approver.post(`/api/requests/${requestId}/reviews`, { decision: 'approve', comment: 'bench' }),
        );
        const until = Date.now() + 180_000;
        const got = () => sims.flatMap((s) => s.jobs.filter((j) => j.requestId === requestId));
        while (got().length < targets && Date.now() < until) await sleep(10);
        const lat = got()
          .map((j) => j.at - approvedAt)
          .sort((x, y) => x - y);
        if (lat.length < targets)
          throw new Error(`only ${lat.length} of ${targets} agents received the job in 180 s`);
        const timeout = new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`request ${requestId} did not end within 180 s`)),
            until - Date.now(),
          ).unref(),
        );
        await Promise.race([end, timeout]);
        ended.delete(requestId);
        ui.emit('unsubscribe', { requestId });
        const { request } = await operator.ok(
          operator.get<{ request: { state: string; completedAt: string | null } }>(
            `/api/requests/${requestId}`,
          ),
        );
        return { lat, endMs: Date.parse(request.completedAt!) - approvedAt, state: request.state, requestId };
      };
      const refusedOf = (requestId: string) => {
        const refused = new Map<string, number>();
        for (const [c, n] of sims.flatMap((s) => [...(s.refusedResults.get(requestId) ?? [])]))
          refused.set(c, (refused.get(c) ?? 0) + n);
        return refused.size
          ? ` — result reports refused: ${[...refused].map(([c, n]) => `${c} ×${n}`).join(', ')}`
          : '';
      };
      const load0 = loadAverage();
      // The baseline: the same path for one target, a few times (the median), in this run.
      const singles = [];
      for (let i = 0; i < SINGLE_ROUNDS; i++) singles.push(await fanOut(1, 1));
      const singleEnd = [...singles.map((r) => r.endMs)].sort((x, y) => x - y)[
        Math.floor(SINGLE_ROUNDS / 2)
      ]!;
      const singleLat = singles.map((r) => r.lat[0]!).sort((x, y) => x - y);
      const rows: FanRow[] = [
        {
          agents: size,
          targets: 1,
          concurrency: 1,
          dispatchP50Ms: pct(singleLat, 50),
          dispatchP99Ms: pct(singleLat, 99),
          lastDispatchMs: singleLat.at(-1)!,
          requestEndMs: singleEnd,
          singleTargetEndMs: singleEnd,
          ratio: 1,
          state: singles.every((r) => r.state === 'succeeded')
            ? 'succeeded'
            : singles.map((r) => r.state).join(','),
        },
      ];
      for (const concurrency of CONCURRENCY) {
        guard(`fan-out at concurrency ${concurrency}`);
        await sleep(3000); // let the last results and the dispatcher settle so requests do not overlap
        const r = await fanOut(FANOUT, concurrency);
        rows.push({
          agents: size,
          targets: FANOUT,
          concurrency,
          dispatchP50Ms: pct(r.lat, 50),
          dispatchP99Ms: pct(r.lat, 99),
          lastDispatchMs: r.lat.at(-1)!,
          requestEndMs: r.endMs,
          singleTargetEndMs: singleEnd,
          ratio: r.endMs / singleEnd,
          state: r.state,
        });
        console.error(`  (${FANOUT} targets at concurrency ${concurrency}${refusedOf(r.requestId)})`);
      }
      for (const row of rows) {
        fans.push(row);
        const { state: _state, lastDispatchMs: _last, ...json } = row;
        console.log(JSON.stringify({ ...json, ratio: Math.round(row.ratio * 100) / 100 }));
      }
      loadDuringFanout.push(
        `${size.toLocaleString('en-US')} agents: ${load0} before, ${loadAverage()} after`,
      );
    }
  }
} finally {
  for (const s of sims) {
    if (s.proc.connected) s.proc.send({ type: 'stop' });
    setTimeout(() => s.proc.kill('SIGKILL'), 3000).unref();
  }
  await Promise.all(
    sims.map((s) =>
      s.proc.exitCode !== null || s.proc.signalCode !== null
        ? null
        : new Promise((r) => s.proc.once('exit', r)),
    ),
  );
  await cp?.cleanup().catch(() => undefined);
  await db.cleanup().catch(() => undefined);
}

const cores = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
const table = [
  '| agents | connect (added, s) | server RSS | server CPU for heartbeats |',
  '|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.agents.toLocaleString('en-US')} | ${r.connectS.toFixed(1)} | ${r.rssMb.toFixed(0)} MB | ${r.cpuSPerMin.toFixed(1)} s/min (${((r.cpuSPerMin / 60) * 100).toFixed(1)}% of a core) |`,
  ),
].join('\n');
const biggest = rows.at(-1);
const fanTable = [
  '| agents connected | targets | rollout concurrency | dispatch median | p99 | last agent | request ended | × single target |',
  '|---:|---:|---:|---:|---:|---:|---|---:|',
  ...fans.map(
    (f) =>
      `| ${f.agents.toLocaleString('en-US')} | ${f.targets.toLocaleString('en-US')} | ${f.concurrency} | ${f.dispatchP50Ms} ms | ${f.dispatchP99Ms} ms | ${f.lastDispatchMs} ms | ${f.state} after ${(f.requestEndMs / 1000).toFixed(2)} s | ${f.ratio.toFixed(1)}× |`,
  ),
].join('\n');
const wide = fans.filter((f) => f.targets > 1);
const section = `## Control plane: scale

\`node --import tsx bench/fanout.ts\` (${new Date().toISOString().slice(0, 10)}; ${cores} cores, Node ${process.version}, PostgreSQL on loopback). One control-plane
process (API-only, \`NODE_ENV=production\`, websocket transport) holds simulated agents run by ${SIMS} separate
Node processes (socket.io-client, each agent with its own Ed25519 key, enrolled through the services, answering
the challenge, heartbeating every ${HEARTBEAT_S} s). CPU is the server process's user+system time over a ${WINDOW_S} s window of
steady heartbeats, per minute; RSS is read from /proc at the end of the window. PostgreSQL, the simulators and
the server share the same ${cores} cores.

${table}

Goal 10,000 agents under 1.5 GB: ${biggest && biggest.agents >= 10_000 ? `${biggest.rssMb.toFixed(0)} MB — ${biggest.rssMb < 1536 ? 'met' : 'NOT met'}` : 'not measured in this run'}.

**Fan-out.** One request with ${FANOUT.toLocaleString('en-US')} targets (one per agent), approved through the HTTP API; time from the
approval call to each agent's receipt of \`job:dispatch\`, and to the request's end (its \`completedAt\`). The request's
rollout limit applies (at most *concurrency* in flight): each agent reports success at once, which frees the slot for
the next. The baseline is the median of ${SINGLE_ROUNDS} single-target requests measured just before, on the same server with the
same agents connected. One fresh request per row; load average (1, 5, 15 min): ${loadDuringFanout.join('; ') || 'not read'}.

${fans.length ? fanTable : 'Not measured in this run.'}

Goals: dispatch p99 < 3 s at concurrency 100 — ${
  wide
    .filter((f) => f.concurrency === 100)
    .map(
      (f) => `${f.dispatchP99Ms < 3000 ? 'met' : 'NOT met'} with ${f.agents.toLocaleString('en-US')} agents`,
    )
    .join(', ') || 'not measured'
}; 1,000 targets at concurrency 1,000 end within 5× the single target — ${
  wide
    .filter((f) => f.concurrency === 1000)
    .map(
      (f) =>
        `${f.ratio <= 5 ? 'met' : 'NOT met'} (${f.ratio.toFixed(1)}×) with ${f.agents.toLocaleString('en-US')} agents`,
    )
    .join(', ') || 'not measured'
}.
`;
console.log(`\n${section}`);
if (WRITE) {
  await writeSection(section);
  console.log(`wrote ${path.relative(process.cwd(), BENCHMARKS_DOC)}`);
}
