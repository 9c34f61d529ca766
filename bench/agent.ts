/**
 * Agent cost and latency, with the real agent bundle (apps/agent/dist/pyreach-agent.mjs) as a process:
 *  1. idle cost with 200+ Python 3.14 processes on the host: resident memory (VmRSS, VmHWM) and CPU time per
 *     minute of the agent process, from /proc/PID/status and /proc/PID/stat, with default scan settings
 *     (full scan every 60 s, pid-list check every 3 s, heartbeat every 15 s), connected to a control plane;
 *  2. time from job received (agent's "job accepted" log line) to script picked up (its "picked_up" state
 *     line), and dispatch → picked_up event as the control plane sees it, for N jobs into an idle target.
 * Run: npm run -w apps/agent build && node --import tsx bench/agent.ts [processes=200] [idleSeconds=120] [jobs=20]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { AgentProcess, FakeControlPlane } from '../test/support/agent-harness';
import { pythonPath, startPython } from '../test/support/python';

const count = Number(process.argv[2] ?? 200);
const idleSeconds = Number(process.argv[3] ?? 120);
const jobs = Number(process.argv[4] ?? 20);
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}
function memKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const py = pythonPath();
const children: ChildProcess[] = [];
const cp = new FakeControlPlane();
// Plain `node bundle` as the systemd unit and the container run it; BENCH_NODE_OPTIONS to try V8 flags.
const NODE_FLAGS = process.env.BENCH_NODE_OPTIONS ?? '';
const agent = new AgentProcess({
  bundle: true,
  config: {},
  env: NODE_FLAGS ? { NODE_OPTIONS: NODE_FLAGS } : {},
});
let target: Awaited<ReturnType<typeof startPython>> | null = null;
try {
  for (let i = 0; i < count; i++)
    children.push(
      spawn(py, ['-S', '-c', 'import time\nwhile True: time.sleep(3600)'], {
        stdio: 'ignore',
        detached: true,
      }),
    );
  target = await startPython('idle.py', { style: 'host' });
  await sleep(3000);
  await cp.start();
  agent.writeConfig({ server: cp.url, logLevel: 'info', policy: { allowRoot: true } }); // default scan/heartbeat/backoff
  const enrolled = await agent.cli(['enroll', '--token', cp.newToken()]);
  if (enrolled.code !== 0) throw new Error(enrolled.stderr);
  agent.start();
  const agentId = JSON.parse(readFileSync(`${agent.stateDir}/identity.json`, 'utf8')).agentId as string;
  await cp.until(() => cp.processes.size >= count + 1, 120_000, 'inventory with every process');
  const procsOnHost = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;
  await sleep(5000); // settle after the initial scan and snapshot
  const pid = agent.pid!;
  const t0 = cpuTicks(pid);
  const w0 = Date.now();
  const rss: number[] = [];
  while (Date.now() - w0 < idleSeconds * 1000) {
    await sleep(1000);
    rss.push(memKb(pid, 'VmRSS'));
  }
  const cpuSec = (cpuTicks(pid) - t0) / CLK_TCK;
  const wallSec = (Date.now() - w0) / 1000;
  const idle = {
    pythonProcessesReported: cp.processes.size,
    processesOnHost: procsOnHost,
    idleSeconds: +wallSec.toFixed(1),
    rssMbMedian: +(pct(rss, 50) / 1024).toFixed(1),
    rssMbMax: +(Math.max(...rss) / 1024).toFixed(1),
    peakRssMb: +(memKb(pid, 'VmHWM') / 1024).toFixed(1),
    cpuSecondsPerMinute: +((cpuSec / wallSec) * 60).toFixed(3),
    cpuPercentOfOneCore: +((cpuSec / wallSec) * 100).toFixed(3),
  };

  // Latency: job received → picked up.
  const p = cp.processes.get(String(target.pid))!;
  const fromLogs: number[] = [];
  const fromCp: number[] = [];
  for (let i = 0; i < jobs; i++) {
    const job = cp.job(agentId, { pid: p.pid, startTime: p.startTime }, 'result = 1\n');
    const from = agent.logLines().length;
    const d0 = performance.now();
    const ack = await cp.dispatch(cp.sign(job));
    if (!ack.ok) throw new Error(JSON.stringify(ack));
    await cp.until(
      () => cp.eventsOf(job.jobId).find((e) => e.type === 'state' && e.state === 'picked_up'),
      20_000,
      'picked up',
    );
    fromCp.push(performance.now() - d0);
    await cp.until(() => cp.resultOf(job.jobId), 20_000, 'result');
    const lines = agent.logLines().slice(from);
    const acc = lines.find((l) => l.msg === 'job accepted' && l.jobId === job.jobId);
    const pick = lines.find((l) => l.msg === 'job state' && l.jobId === job.jobId && l.state === 'picked_up');
    if (acc && pick) fromLogs.push(Date.parse(pick.time as string) - Date.parse(acc.time as string));
    if (process.env.BENCH_VERBOSE)
      console.error(
        lines
          .filter((l) => l.jobId === job.jobId)
          .map((l) => `${String(l.time).slice(17)} ${String(l.msg)} ${String(l.state ?? '')}`)
          .join(' | '),
      );
  }
  const latency = {
    jobs,
    receivedToPickedUpMsMedian: pct(fromLogs, 50),
    receivedToPickedUpMsP95: pct(fromLogs, 95),
    dispatchToPickedUpEventMsMedian: +pct(fromCp, 50).toFixed(1),
    dispatchToPickedUpEventMsP95: +pct(fromCp, 95).toFixed(1),
  };
  console.log(
    JSON.stringify(
      {
        node: process.version,
        nodeOptions: NODE_FLAGS,
        agentProcessRssAfterJobsMb: +(memKb(pid, 'VmRSS') / 1024).toFixed(1),
        idle,
        latency,
      },
      null,
      2,
    ),
  );
} finally {
  await agent.kill('SIGKILL');
  await cp.stop();
  await target?.kill();
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
process.exit(0);
