/**
 * Approve → first output, end to end, split by stage: the real control plane (apps/web/server.ts, API-only, on
 * PostgreSQL), the real agent process, real CPython 3.14 targets, and a `/ui` subscriber standing in for the
 * browser. Per run: an operator files a one-target custom request (`print(...)`), the subscriber joins its room,
 * an approver approves it through the HTTP API, and the clock stops when the subscriber receives the first
 * `execution:output` push. Each run's stages come from the execution's own timestamps (all clocks are this
 * machine's):
 *
 *   approval   the approval call's round trip (the vote's transaction; dispatch is woken after it commits)
 *   dispatch   approvedAt → sentAt (the dispatcher signs and emits job:dispatch)
 *   agent      sentAt → stagedAt (the agent verifies the envelope, runs its checks, fsyncs its outbox and
 *              stages the run in the target)
 *   pickup     stagedAt → pickedUpAt (the harness's own timestamp inside the target)
 *   output     pickedUpAt → first output push received (the code prints, the harness flushes, the agent
 *              relays, the control plane applies the report and pushes it)
 *
 * Baseline, in the same run and against the same targets: the engine alone (`runInTarget`, no agent, no control
 * plane), request → pickup. The ratio printed is median(approve → first output) / (median(agent) + median(engine
 * request → pickup)): the goal is at most 3×.
 *
 * Targets: a service like the demo's (logging every 0.2 s), a busy one (pure bytecode), and an idle one whose
 * main thread sleeps. Runs alternate between targets.
 *
 *   node --import tsx bench/latency.ts [--runs 50]
 *
 * Prints a table and one line of JSON per target; writes nothing (figures are copied to docs/benchmarks.md).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io as ioClient } from 'socket.io-client';
import { runInTarget } from '../packages/remote-exec/src/index';
import { AgentProcess } from '../test/support/agent-harness';
import { ApiClient } from '../test/support/api';
import { startControlPlane, USERS, type ControlPlane } from '../test/support/control-plane';
import { eventually } from '../test/support/eventually';
import { startPython, type PyTarget } from '../test/support/python';

const argOf = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(argOf('runs') ?? 50);
const ENGINE_ROUNDS = Math.max(10, Math.ceil(RUNS / 2));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => pct(xs, 50);
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const ms = (n: number) => `${n.toFixed(n < 10 ? 1 : 0)} ms`;

interface Proc {
  agentId: string;
  pid: number;
  startTime: string;
}
interface Execution {
  id: string;
  state: string;
  sentAt: string | null;
  stagedAt: string | null;
  pickedUpAt: string | null;
}
interface Req {
  id: string;
  state: string;
  approvedAt: string | null;
  executions?: Execution[];
}
interface Run {
  total: number;
  approval: number;
  dispatch: number;
  agent: number;
  pickup: number;
  output: number;
}
const STAGES = ['approval', 'dispatch', 'agent', 'pickup', 'output'] as const;

const TARGETS = [
  { name: 'demo-like service', script: 'log_service.py' },
  { name: 'busy', script: 'busy.py' },
  { name: 'idle (sleeping main thread)', script: 'idle.py' },
] as const;

let cp: ControlPlane | null = null;
let agent: AgentProcess | null = null;
const targets: PyTarget[] = [];
const ui: { close(): void }[] = [];
try {
  cp = await startControlPlane('postgres', { PYREACH_REAUTH_MINUTES: '120', LOG_LEVEL: 'warn' });
  const [admin, operator, approver] = await Promise.all(
    [USERS.admin, USERS.operator, USERS.approver].map((u) => ApiClient.signIn(cp!.baseUrl, u)),
  );
  await admin!.ok(
    admin!.post('/api/policies', {
      name: 'latency',
      matchLabels: { env: 'latency' },
      priority: 100,
      requiredApprovals: 1,
      allowCustomCode: true,
      approverRoles: ['approver', 'admin'],
    }),
  );
  const token = (
    await admin!.ok(
      admin!.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'latency' } }),
    )
  ).joinToken.token;
  for (const t of TARGETS) targets.push(await startPython(t.script, { style: 'host' }));
  agent = new AgentProcess({
    config: { server: cp.baseUrl, policy: { allowRoot: true }, logLevel: 'warn' },
  });
  const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=latency']);
  if (enrolled.code !== 0) throw new Error(`enrolment failed: ${enrolled.stderr}${enrolled.stdout}`);
  agent.start();
  const agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId as string;
  const procs = await Promise.all(
    targets.map((t) =>
      eventually(
        `pid ${t.pid} in the fleet`,
        async () => {
          const r = await admin!.ok(admin!.get<{ processes: Proc[] }>('/api/fleet/processes?limit=10000'));
          return r.processes.find((p) => p.pid === t.pid && p.agentId === agentId);
        },
        60_000,
      ),
    ),
  );

  // The browser stand-in: signed in as the operator, live on /ui.
  const sock = ioClient(`${cp.baseUrl}/ui`, {
    transports: ['websocket'],
    extraHeaders: { cookie: operator!.cookie! },
    reconnection: false,
    forceNew: true,
  });
  ui.push(sock);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('connect_error', reject);
  });
  const firstOutput = new Map<string, (at: number) => void>();
  sock.on('execution:output', (m: { requestId: string }) => {
    const at = performance.timeOrigin + performance.now();
    firstOutput.get(m.requestId)?.(at);
    firstOutput.delete(m.requestId);
  });

  const once = async (p: Proc, i: number): Promise<Run> => {
    const created = await operator!.ok(
      operator!.post<{ request: Req }>('/api/requests', {
        kind: 'custom',
        code: `print("latency run ${i}")\n`,
        targets: { type: 'processes', processes: [{ agentId, pid: p.pid, startTime: p.startTime }] },
        reason: 'latency benchmark',
      }),
    );
    const id = created.request.id;
    const joined = await sock.timeout(5000).emitWithAck('subscribe', { requestId: id });
    if (!joined.ok) throw new Error(`could not subscribe to ${id}`);
    const pushed = new Promise<number>((resolve, reject) => {
      firstOutput.set(id, resolve);
      setTimeout(() => reject(new Error(`no output push for ${id} within 60 s`)), 60_000).unref();
    });
    const t0 = performance.timeOrigin + performance.now();
    await approver!.ok(approver!.post(`/api/requests/${id}/reviews`, { decision: 'approve', comment: 'ok' }));
    const t1 = performance.timeOrigin + performance.now();
    const at = await pushed;
    sock.emit('unsubscribe', { requestId: id });
    const r = await eventually(`request ${id} with its timestamps`, async () => {
      const { request } = await operator!.ok(operator!.get<{ request: Req }>(`/api/requests/${id}`));
      const e = request.executions?.[0];
      return request.approvedAt && e?.sentAt && e.stagedAt && e.pickedUpAt ? { request, e } : null;
    });
    const approvedAt = Date.parse(r.request.approvedAt!);
    const sent = Date.parse(r.e.sentAt!);
    const staged = Date.parse(r.e.stagedAt!);
    const picked = Date.parse(r.e.pickedUpAt!);
    return {
      total: at - t0,
      approval: t1 - t0,
      dispatch: sent - approvedAt,
      agent: staged - sent,
      pickup: picked - staged,
      output: at - picked,
    };
  };

  // Warm-up: one run per target (the first of anything pays for compilation and connection set-up).
  for (const [i, p] of procs.entries()) await once(p, -1 - i);
  const runs: Run[][] = TARGETS.map(() => []);
  for (let i = 0; i < RUNS; i++)
    for (const [k, p] of procs.entries()) {
      runs[k]!.push(await once(p, i));
      await sleep(20);
    }

  // Baseline in the same run: the engine alone, request → pickup, against the same targets. The agent is
  // stopped first so nothing else holds the targets' locks.
  await agent.kill('SIGTERM');
  const engine: number[][] = TARGETS.map(() => []);
  for (let i = 0; i < ENGINE_ROUNDS + 1; i++)
    for (const [k, t] of targets.entries()) {
      const start = Date.now();
      const r = await runInTarget({ pid: t.pid, backend: 'native', code: 'pass' });
      if (r.status !== 'succeeded' || !r.pickedUpAt) throw new Error(`engine run ${r.status}: ${r.message}`);
      if (i > 0) engine[k]!.push(Date.parse(r.pickedUpAt) - start);
    }

  const cores = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  console.log(
    `\n${RUNS} runs per target after one warm-up each, ${new Date().toISOString().slice(0, 10)}, ${cores} cores, ` +
      `Node ${process.version}, PostgreSQL on loopback; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`,
  );
  console.log(
    '| target | approve → first output p50 | p99 | approval | dispatch | agent | pickup | output + push | engine alone: request → pickup | ratio |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const json: string[] = [];
  for (const [k, t] of TARGETS.entries()) {
    const rs = runs[k]!;
    const total = rs.map((r) => r.total);
    const stage = Object.fromEntries(STAGES.map((s) => [s, median(rs.map((r) => r[s]))])) as Record<
      (typeof STAGES)[number],
      number
    >;
    const eng = median(engine[k]!);
    const ratio = median(total) / (stage.agent + eng);
    console.log(
      `| ${t.name} | **${ms(median(total))}** | ${ms(pct(total, 99))} | ${STAGES.map((s) => ms(stage[s])).join(' | ')} | ${ms(eng)} | ${ratio.toFixed(1)}× |`,
    );
    json.push(
      JSON.stringify({
        target: t.script,
        runs: rs.length,
        p50Ms: Math.round(median(total) * 10) / 10,
        p99Ms: Math.round(pct(total, 99) * 10) / 10,
        stagesMedianMs: Object.fromEntries(STAGES.map((s) => [s, Math.round(stage[s] * 10) / 10])),
        engineRequestToPickupMs: Math.round(eng * 10) / 10,
        ratio: Math.round(ratio * 100) / 100,
      }),
    );
  }
  console.log(`\n${json.join('\n')}`);
  console.log(
    '\nStages are medians of each stage on its own, so they need not add up to the median total. ' +
      'ratio = median total / (median agent stage + median engine request → pickup); goal ≤ 3×.',
  );
} finally {
  for (const s of ui) s.close();
  await agent?.kill('SIGKILL').catch(() => undefined);
  await cp?.cleanup().catch(() => undefined);
  await Promise.all(targets.map((t) => t.kill().catch(() => undefined)));
}
process.exit(0);
