/**
 * Job protocol v2 and inspection jobs, end to end: the real agent process (CLI through tsx), a control plane
 * speaking the real /agents protocol with a signing key the test holds (test/support/agent-harness.ts), and real
 * CPython 3.14 targets. v1 and v2 envelopes both run; a v2 field the agent does not know, a replay and a wake its
 * local policy does not allow are refused; inspections return what the target itself sees of its stacks and asyncio tasks,
 * honour the local policy for targets that opted out, are killed at their deadline when the read hangs, fit the
 * wire for a thousand-thread target, and never wait behind a running job. The same agent against the real
 * control plane (which signs v2 for a v2 agent) is in agent-server.int.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGENT_EVENT_MAX_BYTES } from '@pyreach/protocol/agent';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { jsonBytes } from '@pyreach/protocol/common';
import { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { ChildInspector, selfCommand } from '../../apps/agent/src/inspect';
import { AGENT_CLI, AgentProcess, FakeControlPlane } from '../support/agent-harness';
import {
  besideScript,
  knownStacks,
  startPython,
  type PyTarget,
  type StartOptions,
  type ViewFrame,
} from '../support/python';

const sideEffect = (name: string) => `/tmp/pyreach-agent-v2-${process.pid}-${name}.txt`;
const appendCode = (file: string, extra = '') =>
  `with open(${JSON.stringify(file)}, "a") as f:\n    f.write("ran\\n")\n${extra}`;
const lines = (path: string) =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function contextSwitches(pid: number): string {
  return readdirSync(`/proc/${pid}/task`)
    .sort()
    .map((tid) => {
      const s = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      return `${tid}:${/^voluntary_ctxt_switches:\s*(\d+)/m.exec(s)?.[1]}/${/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(s)?.[1]}`;
    })
    .join(' ');
}

/** Children of `ppid` whose command line contains `needle`. */
function childrenOf(ppid: number, needle: string): number[] {
  const out: number[] = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const ppidOf = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppidOf !== ppid) continue;
      if (readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(needle)) out.push(Number(n));
    } catch {
      /* gone */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => a.id.localeCompare(b.id));

describe('agent speaking job protocol v2', { timeout: 600_000 }, () => {
  const cp = new FakeControlPlane();
  let agent: AgentProcess;
  let agentId: string;
  let host: PyTarget;
  const files: string[] = [];
  const targets: PyTarget[] = [];
  const config = (extra: Record<string, unknown> = {}) => ({
    server: cp.url,
    policy: { allowRoot: true },
    // Longer than the reading child needs to start through tsx on a loaded machine; short enough to test.
    inspection: { readTimeoutSeconds: 5, deadlineSeconds: 12 },
    ...extra,
  });

  const target = async (t: PyTarget) => {
    const p = await cp.until(() => cp.processes.get(String(t.pid)), 30_000, `pid ${t.pid} in the inventory`);
    return { pid: p.pid, startTime: p.startTime };
  };
  const start = async (script: string, opts: StartOptions = {}) => {
    const t = await startPython(script, opts);
    targets.push(t);
    return t;
  };
  const restart = async (extra: Record<string, unknown> = {}) => {
    await agent.kill('SIGTERM');
    agent.writeConfig(config(extra));
    const before = cp.authCount;
    agent.start();
    await cp.until(() => cp.authCount > before && cp.isConnected(), 30_000, 'the agent reconnected');
  };

  before(async () => {
    host = await start('idle.py');
    await cp.start();
    agent = new AgentProcess({ config: config() });
    const enrolled = await agent.cli(['enroll', '--token', cp.newToken()]);
    assert.equal(enrolled.code, 0, enrolled.stderr);
    agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
    agent.start();
  });

  after(async () => {
    await agent?.kill('SIGKILL');
    await cp.stop();
    await Promise.all(targets.map((t) => t.kill()));
    for (const f of files) rmSync(f, { force: true });
  });

  test('the agent announces protocol v2 at its handshake and says so in its status', async () => {
    await cp.until(() => cp.isConnected(), 30_000, 'connected');
    assert.deepEqual([...new Set(cp.handshakes)], [2]);
    await agent.waitForLog('authenticated');
    const st = JSON.parse(readFileSync(join(agent.stateDir, 'status.json'), 'utf8'));
    assert.equal(st.protocolVersion, 2);
  });

  test('a v1 and a v2 envelope both run in a real target, and the v2 approvals reach the local audit', async () => {
    const t = await target(host);
    const f1 = sideEffect('v1');
    const f2 = sideEffect('v2');
    files.push(f1, f2);
    const v1 = cp.job(agentId, t, appendCode(f1, 'result = "v1"\n'));
    const v2 = cp.jobV2(agentId, t, appendCode(f2, 'result = "v2"\n'), {
      options: { ...cp.jobV2(agentId, t, '').options, thread: { tid: t.pid } },
      breakGlass: true,
    });
    assert.deepEqual(await cp.dispatch(cp.sign(v1)), { ok: true, accepted: true });
    assert.deepEqual(await cp.dispatch(cp.signV2(v2)), { ok: true, accepted: true });
    const r1 = await cp.until(() => cp.resultOf(v1.jobId), 30_000, 'v1 result');
    const r2 = await cp.until(() => cp.resultOf(v2.jobId), 30_000, 'v2 result');
    assert.deepEqual([r1.result.status, r1.result.result], ['succeeded', 'v1']);
    assert.deepEqual([r2.result.status, r2.result.result], ['succeeded', 'v2']);
    const started = agent.audit().find((a) => a.jobId === v2.jobId && a.event === 'started')!;
    assert.equal(started.threadUsed, t.pid, 'aimed at the thread the job named');
    assert.equal(lines(f1) + lines(f2), 2);
    // (It waited behind the v1 job: one job per target process at a time, whatever the version.)
    const audit = agent.audit().filter((a) => a.jobId === v2.jobId);
    assert.deepEqual(
      audit.map((a) => a.event).filter((e) => e !== 'queued'),
      ['received', 'started', 'finished'],
    );
    for (const a of audit) {
      assert.equal(a.contentHash, v2.contentHash);
      assert.deepEqual(a.approvals, v2.approvals);
      assert.equal(a.breakGlass, true);
    }
    const journal = JSON.parse(readFileSync(join(agent.stateDir, 'jobs', v2.jobId, 'job.json'), 'utf8'));
    assert.deepEqual([journal.v, journal.contentHash, journal.approvals], [2, v2.contentHash, v2.approvals]);
    assert.equal(agent.audit().find((a) => a.jobId === v1.jobId && a.event === 'received')!.v, 1);
  });

  test('a v2 envelope with a field the agent does not know is refused saying to upgrade, and nothing runs', async () => {
    const f = sideEffect('unknown-field');
    files.push(f);
    const p = cp.jobV2(agentId, await target(host), appendCode(f));
    const env = cp.signV2Text(canonicalJson({ ...p, options: { ...p.options, sandbox: 'strict' } }));
    const ack = await cp.dispatch(env);
    assert.equal(ack.ok, false);
    assert.equal(ack.error?.code, 'MALFORMED');
    assert.match(
      ack.error?.message ?? '',
      /fields this agent does not understand \(options\.sandbox\): upgrade the agent/,
    );
    await sleep(500);
    assert.equal(lines(f), 0);
    assert.ok(
      agent.audit().some((a) => a.event === 'refused' && /upgrade the agent/.test(String(a.message))),
    );
  });

  test('a replayed v2 job is refused and runs once; a v2 job asking to wake is refused by the default policy, never run without it', async () => {
    const t = await target(host);
    const f = sideEffect('replay-v2');
    files.push(f);
    const env = cp.signV2(cp.jobV2(agentId, t, appendCode(f)));
    assert.equal((await cp.dispatch(env)).ok, true);
    const jobId = JSON.parse(env.payload).jobId as string;
    await cp.until(() => cp.resultOf(jobId), 30_000, 'first run');
    const again = await cp.dispatch(env);
    assert.equal(again.error?.code, 'REPLAYED');
    assert.equal(lines(f), 1);

    const w = sideEffect('wake');
    files.push(w);
    const p = cp.jobV2(agentId, t, appendCode(w));
    const wake = await cp.dispatch(cp.signV2({ ...p, options: { ...p.options, wake: true } }));
    assert.equal(wake.error?.code, 'POLICY_WAKE');
    assert.match(wake.error?.message ?? '', /does not allow.*allowWake/);
    const ev = await cp.until(
      () => cp.eventsOf(p.jobId).find((e) => e.type === 'refused'),
      10_000,
      'durable refusal',
    );
    assert.ok(ev.type === 'refused' && ev.code === 'POLICY_WAKE');
    assert.equal(lines(w), 0);
  });

  test('an inspect job returns the stacks the target itself sees, without waking or pausing any thread', async () => {
    const { t, view } = await knownStacks();
    targets.push(t);
    const p = cp.inspectJob(agentId, await target(t), 'stacks');
    const switches = contextSwitches(t.pid);
    const out = t.stdout().length;
    assert.deepEqual(await cp.dispatch(cp.signV2(p)), { ok: true, accepted: true });
    const res = await cp.until(() => cp.resultOf(p.jobId), 60_000, 'stacks result');
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result).slice(0, 2000));
    assert.match(res.result.message ?? '', /3 thread\(s\) read from memory.*no code ran in the target/);
    const report = StacksReport.parse(res.result.result);
    assert.equal(report.status, 'complete');
    const byTid = new Map(report.threads.map((x) => [x.tid, x]));
    for (const v of view.threads) {
      assert.deepEqual(
        byTid.get(v.tid)?.frames,
        v.frames.map(({ function: fn, file, line }) => ({ function: fn, file, line })),
        `stack of ${v.name}`,
      );
      assert.equal(byTid.get(v.tid)?.main, v.main);
    }
    assert.equal(contextSwitches(t.pid), switches, 'no thread of the target was woken');
    assert.equal(t.stdout().length, out, 'the target printed nothing');
    assert.deepEqual(
      cp.eventsOf(p.jobId).map((e) => e.type),
      ['result'],
      'no staged or picked_up: nothing was injected',
    );
    const audit = agent.audit().filter((a) => a.jobId === p.jobId);
    assert.deepEqual(
      audit.map((a) => [a.event, a.action, a.what]),
      [
        ['received', 'inspect', 'stacks'],
        ['started', 'inspect', 'stacks'],
        ['finished', 'inspect', 'stacks'],
      ],
    );
  });

  test('an inspect job returns the asyncio tasks the target itself sees', async () => {
    const t = await start('asyncio_known.py');
    const view = JSON.parse(readFileSync(besideScript(t, 'view.json'), 'utf8')) as {
      tasks: { id: string; name: string; stack: ViewFrame[]; awaitedBy: { id: string }[] }[];
      futures: { id: string }[];
    };
    const p = cp.inspectJob(agentId, await target(t), 'tasks');
    assert.equal((await cp.dispatch(cp.signV2(p))).ok, true);
    const res = await cp.until(() => cp.resultOf(p.jobId), 60_000, 'tasks result');
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result).slice(0, 2000));
    const report = TasksReport.parse(res.result.result);
    assert.equal(report.status, 'complete', JSON.stringify(report.errors));
    assert.deepEqual(
      byId(report.tasks).map((x) => ({
        id: x.id,
        name: x.name,
        stack: x.stack,
        awaitedBy: byId(x.awaitedBy),
      })),
      byId(view.tasks).map((x) => ({ ...x, awaitedBy: byId(x.awaitedBy) })),
    );
    assert.deepEqual(byId(report.futures), byId(view.futures as never));
  });

  test('an inspection does not wait behind a job running in the same target', async () => {
    const t = await target(host);
    const f = sideEffect('long');
    files.push(f);
    const long = cp.jobV2(agentId, t, appendCode(f, 'import time\ntime.sleep(6)\nresult = 1\n'));
    assert.equal((await cp.dispatch(cp.signV2(long))).ok, true);
    await cp.until(
      () => cp.eventsOf(long.jobId).find((e) => e.type === 'state' && e.state === 'picked_up'),
      20_000,
      'the job runs',
    );
    const p = cp.inspectJob(agentId, t, 'stacks');
    assert.equal((await cp.dispatch(cp.signV2(p))).ok, true);
    const res = await cp.until(() => cp.resultOf(p.jobId), 30_000, 'inspection result');
    assert.equal(res.result.status, 'succeeded');
    assert.equal(cp.resultOf(long.jobId), undefined, 'read while the job still ran');
    assert.ok(!cp.eventsOf(p.jobId).some((e) => e.type === 'queued'));
    // The thread the job runs on is there beside the main thread, in the middle of the job's code.
    const report = StacksReport.parse(res.result.result);
    assert.ok(report.threads.length >= 2, JSON.stringify(report.threads.map((x) => x.frames.slice(0, 3))));
    await cp.until(() => cp.resultOf(long.jobId), 30_000, 'the job finished');
  });

  test('a remote-debug-disabled target is not inspected by default, and is when the local policy allows it', async () => {
    const { t, view } = await knownStacks({ disableRemoteDebug: true });
    targets.push(t);
    const where = await target(t);
    const refused = cp.inspectJob(agentId, where, 'stacks');
    const ack = await cp.dispatch(cp.signV2(refused));
    assert.equal(ack.error?.code, 'POLICY_OPTED_OUT');
    assert.match(ack.error?.message ?? '', /disabled remote debugging.*"allowOptedOut": true/);
    const ev = await cp.until(
      () => cp.eventsOf(refused.jobId).find((e) => e.type === 'refused'),
      10_000,
      'durable refusal',
    );
    assert.ok(ev.type === 'refused' && ev.code === 'POLICY_OPTED_OUT');

    await restart({ policy: { allowRoot: true, inspect: { allowOptedOut: true } } });
    const allowed = cp.inspectJob(agentId, await target(t), 'stacks');
    assert.equal((await cp.dispatch(cp.signV2(allowed))).ok, true);
    const res = await cp.until(() => cp.resultOf(allowed.jobId), 60_000, 'stacks of an opted-out target');
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result).slice(0, 2000));
    const report = StacksReport.parse(res.result.result);
    assert.equal(report.remoteDebugEnabled, false);
    assert.deepEqual(report.threads.map((x) => x.tid).sort(), view.threads.map((x) => x.tid).sort());
    await restart();
  });

  test('the reading child itself, when not allowed, reads nothing of an opted-out target the inventory has not seen yet', async () => {
    // The dispatch ack refuses what the inventory already knows opted out; a process it has not scanned yet is
    // refused by the child, from the target's own memory, before any stack is read.
    const t = await start('idle.py', { disableRemoteDebug: true });
    const stat = readFileSync(`/proc/${t.pid}/stat`, 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    const child = new ChildInspector(selfCommand(process.execPath, ['--import', 'tsx'], AGENT_CLI));
    const req = {
      pid: t.pid,
      startTime,
      what: 'stacks' as const,
      allowOptedOut: false,
      readTimeoutMs: 5000,
      maxFrames: 64,
      maxReadBytes: 1 << 24,
      maxReportBytes: 1 << 20,
    };
    const signal = new AbortController().signal;
    assert.deepEqual(await child.inspect(req, { deadlineMs: 30_000, signal }), {
      kind: 'opted_out',
      remoteDebugEnabled: false,
    });
    const allowed = await child.inspect({ ...req, allowOptedOut: true }, { deadlineMs: 30_000, signal });
    assert.equal(allowed.kind, 'report');
    assert.equal(
      allowed.kind === 'report' && allowed.what === 'stacks' && allowed.report.remoteDebugEnabled,
      false,
    );
    const wrong = await child.inspect({ ...req, startTime: '1' }, { deadlineMs: 30_000, signal });
    assert.equal(wrong.kind, 'gone', 'a start time that does not match is another process');
  });

  test('an inspect job reads a container-style target: thread ids as the target sees them', async () => {
    const t = await start('idle.py', { style: 'container' });
    const p = cp.inspectJob(agentId, await target(t), 'stacks');
    assert.equal((await cp.dispatch(cp.signV2(p))).ok, true);
    const res = await cp.until(() => cp.resultOf(p.jobId), 60_000, 'stacks result');
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result).slice(0, 2000));
    const report = StacksReport.parse(res.result.result);
    assert.equal(report.nsPid, 1);
    const main = report.threads.find((x) => x.main)!;
    assert.deepEqual([main.tid, main.hostTid], [1, t.pid]);
  });

  test('an inspection whose read hangs is killed at its deadline and ends INSPECT_TIMEOUT', async () => {
    // A real FUSE hang (the target remapping a page onto a file its own server holds, between the reader's
    // check and its read) cannot be staged deterministically here; the reading child is stopped instead, so it
    // never answers, exactly like a child blocked in that read.
    const p = cp.inspectJob(agentId, await target(host), 'stacks');
    const t0 = Date.now();
    assert.equal((await cp.dispatch(cp.signV2(p))).ok, true);
    let child: number | undefined;
    while (!child && Date.now() - t0 < 10_000) {
      child = childrenOf(agent.pid!, '__inspect-child')[0];
      if (!child) await sleep(5);
    }
    assert.ok(child, 'the reading child was seen');
    process.kill(child, 'SIGSTOP');
    const res = await cp.until(() => cp.resultOf(p.jobId), 40_000, 'timeout result');
    const took = Date.now() - t0;
    assert.equal(res.result.status, 'failed');
    assert.equal(res.result.errorCode, 'INSPECT_TIMEOUT');
    assert.match(
      res.result.message ?? '',
      /within 12 s \(inspection\.deadlineSeconds\).*Nothing ran in the target/,
    );
    assert.ok(took >= 11_000 && took < 30_000, `ended after ${took} ms`);
    for (let i = 0; i < 100 && alive(child); i++) await sleep(50);
    assert.equal(alive(child), false, 'the stopped child was killed');
    // The agent is fine afterwards.
    const q = cp.inspectJob(agentId, await target(host), 'stacks');
    assert.equal((await cp.dispatch(cp.signV2(q))).ok, true);
    assert.equal(
      (await cp.until(() => cp.resultOf(q.jobId), 30_000, 'next inspection')).result.status,
      'succeeded',
    );
  });

  test('the stacks of a target with more than a thousand deep threads fit one message and say what was cut', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pyreach-agent-v2-'));
    const script = join(dir, 'many.py');
    writeFileSync(
      script,
      [
        'import threading',
        'threading.stack_size(256 * 1024)',
        'N, DEPTH = 1200, 60',
        'never = threading.Event()',
        'parked = threading.Barrier(N + 1)',
        'def deep(n):',
        '    if n == 0:',
        '        parked.wait()',
        '        never.wait()',
        '    else:',
        '        deep(n - 1)',
        'for i in range(N):',
        '    threading.Thread(target=deep, args=(DEPTH,), name=f"w{i}", daemon=True).start()',
        'parked.wait()',
        'print("READY", flush=True)',
        'never.wait()',
        '',
      ].join('\n'),
    );
    const t = await start(script, { readyTimeoutMs: 60_000 });
    try {
      const p = cp.inspectJob(agentId, await target(t), 'stacks');
      assert.equal((await cp.dispatch(cp.signV2(p))).ok, true);
      const res = await cp.until(() => cp.resultOf(p.jobId), 60_000, 'stacks result');
      assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result).slice(0, 2000));
      assert.ok(jsonBytes(res) < AGENT_EVENT_MAX_BYTES['job:event'], String(jsonBytes(res)));
      const report = StacksReport.parse(res.result.result);
      assert.equal(report.status, 'partial');
      assert.match(res.result.message ?? '', /^partial report: /);
      assert.match(res.result.message ?? '', /cut by the agent to fit one message/);
      assert.ok(report.threads.length >= 1000, String(report.threads.length));
      assert.ok(report.errors.some((e) => e.code === 'TRUNCATED'));
      const workers = report.threads.filter((x) => !x.main && x.frames.length > 0);
      assert.ok(workers.length > 0);
      for (const w of workers.slice(0, 50)) {
        assert.equal(w.truncated, true);
        assert.deepEqual(
          w.frames.slice(0, 3).map((f) => f.function),
          ['Condition.wait', 'Event.wait', 'deep'],
          'innermost frames are the ones kept',
        );
      }
    } finally {
      await t.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('against a control plane from before protocol v2 the agent connects with v1 and its v1 jobs run', async () => {
    cp.speaks = 1;
    const port = cp.port;
    const before = cp.handshakes.length;
    await cp.stop();
    await cp.start(port);
    const auths = cp.authCount;
    await cp.until(() => cp.authCount > auths, 30_000, 'reconnected with v1');
    assert.deepEqual(cp.handshakes.slice(before).slice(-2), [2, 1], 'announced 2, refused, then 1');
    const f = sideEffect('old-cp');
    files.push(f);
    const p = cp.job(agentId, await target(host), appendCode(f, 'result = "old"\n'));
    assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
    const res = await cp.until(() => cp.resultOf(p.jobId), 30_000, 'result');
    assert.deepEqual([res.result.status, res.result.result], ['succeeded', 'old']);
    assert.equal(lines(f), 1);
    // Upgraded: the next connection speaks v2 again.
    cp.speaks = 2;
    const n = cp.handshakes.length;
    await cp.stop();
    await cp.start(port);
    await cp.until(() => cp.isConnected(), 30_000, 'reconnected');
    assert.equal(cp.handshakes.slice(n).at(-1), 2);
  });
});
