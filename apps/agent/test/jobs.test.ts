import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ExecResult } from '@pyreach/protocol/exec';
import { AuditLog, readAuditTail } from '../src/audit';
import { AgentConfig } from '../src/config';
import type { Engine, RunOptions } from '../src/engine';
import { JobRunner, type JobRunnerDeps } from '../src/jobs';
import { Outbox } from '../src/outbox';
import { runIdOf } from '../src/recovery';
import { SeenStore } from '../src/seen';
import { StacksReport } from '@pyreach/protocol/inspect';
import type { InspectOutcome, InspectRequest, Inspector } from '../src/inspect';
import { inspectPayload, payload, payloadV2, signer, silentLog, tempDir } from './helpers';

const cp = signer();

/** An engine stand-in for the pipeline's bookkeeping; real runs are covered by the integration tests. */
function scriptedEngine(script: (o: RunOptions) => Promise<ExecResult>): Engine & { runs: RunOptions[] } {
  const runs: RunOptions[] = [];
  return {
    runs,
    discover: async () => [],
    runInTarget: async (o) => {
      runs.push(o);
      return script(o);
    },
  };
}

function open(
  dir: string,
  engine: Engine,
  policy: object = { allowRoot: true },
  extra: Partial<JobRunnerDeps> & { settings?: object } = {},
) {
  const outbox = new Outbox(dir);
  const unfinished = outbox.open();
  const seen = new SeenStore(dir);
  seen.open();
  const audit = new AuditLog(dir);
  const { settings, ...deps } = extra;
  const runner = new JobRunner({
    config: AgentConfig.parse({ stateDir: dir, policy, ...settings }),
    agentId: 'agent_1',
    pinnedKey: cp.publicKey,
    outbox,
    seen,
    audit,
    engine,
    log: silentLog,
    userName: () => 'app',
    readTarget: (pid) => ({ pid, startTime: '1000', uids: [1001, 1001, 1001, 1001], gid: 1001 }),
    ...deps,
  });
  const close = () => {
    outbox.close();
    seen.close();
    audit.close();
  };
  return { outbox, seen, runner, unfinished, close };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('an accepted job journals staged, picked_up, coalesced output and the result in order', async () => {
  const dir = tempDir();
  const engine = scriptedEngine(async (o) => {
    o.onState?.('staged');
    o.onState?.('picked_up');
    for (let i = 0; i < 100; i++) o.onOutput?.(`line ${i}\n`);
    return { status: 'succeeded', output: 'all', result: 42 };
  });
  const a = open(dir, engine);
  const p = payload();
  assert.deepEqual(a.runner.dispatch(cp.sign(p)), { ok: true, accepted: true });
  await until(() => a.outbox.isFinal(p.jobId));
  const events = a.outbox.pending();
  assert.deepEqual(
    events.map((e) => e.type),
    ['state', 'state', 'output', 'result'],
    '100 chunks coalesced into one output event',
  );
  assert.deepEqual(
    events.map((e) => e.seq),
    [1, 2, 3, 4],
  );
  assert.equal(engine.runs[0]!.expectStartTime, '1000');
  assert.equal(engine.runs[0]!.budgetMs, 30_000);
  const audit = readAuditTail(dir, 10);
  assert.deepEqual(
    audit.map((e) => e.event),
    ['received', 'started', 'finished'],
  );
  assert.equal(audit[2]!.outcome, 'succeeded');
  assert.equal(audit[2]!.codeHash, p.codeHash);
  a.close();
});

test('a job id is refused as REPLAYED after an agent restart, and the code is not run again', async () => {
  const dir = tempDir();
  const engine = scriptedEngine(async () => ({ status: 'succeeded', output: '' }));
  const p = payload();
  const a = open(dir, engine);
  a.runner.dispatch(cp.sign(p));
  await until(() => a.outbox.isFinal(p.jobId));
  a.close();
  const b = open(dir, engine);
  const ack = b.runner.dispatch(cp.sign(p));
  assert.equal(ack.ok, false);
  assert.equal(!ack.ok && ack.error.code, 'REPLAYED');
  assert.equal(engine.runs.length, 1);
  assert.equal(readAuditTail(dir, 1)[0]!.code, 'REPLAYED');
  b.close();
});

test('a policy refusal is acked with its code and journalled as a refused event with the reason', () => {
  const dir = tempDir();
  const engine = scriptedEngine(async () => ({ status: 'succeeded', output: '' }));
  const a = open(dir, engine, { allowCustomCode: false });
  const p = payload();
  const ack = a.runner.dispatch(cp.sign(p));
  assert.equal(!ack.ok && ack.error.code, 'POLICY_CUSTOM_CODE');
  const [ev] = a.outbox.pending();
  assert.equal(ev?.type, 'refused');
  assert.equal(ev?.type === 'refused' && ev.code, 'POLICY_CUSTOM_CODE');
  assert.match(ev?.type === 'refused' ? ev.message : '', /allowCustomCode/);
  assert.equal(engine.runs.length, 0);
  assert.equal(a.seen.has(p.jobId), true);
  a.close();
});

test('a forged job is refused in the ack and audited, without touching the job id or the outbox', () => {
  const dir = tempDir();
  const engine = scriptedEngine(async () => ({ status: 'succeeded', output: '' }));
  const a = open(dir, engine);
  const p = payload();
  const ack = a.runner.dispatch(signer().sign(p));
  assert.equal(!ack.ok && ack.error.code, 'UNKNOWN_KEY');
  assert.equal(a.outbox.depth(), 0);
  assert.equal(a.seen.has(p.jobId), false, 'a forger cannot burn a real job id');
  const [line] = readAuditTail(dir, 1);
  assert.equal(line!.jobId, p.jobId);
  assert.equal(line!.trusted, false);
  a.close();
});

test('beyond maxConcurrentJobs (jobs for distinct processes) and while draining jobs are refused as BUSY', async () => {
  const dir = tempDir();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const engine = scriptedEngine(async () => {
    await gate;
    return { status: 'succeeded', output: '' };
  });
  const a = open(dir, engine);
  const outbox = a.outbox;
  const other = (i: number) => payload({ target: { pid: 5000 + i, startTime: '1000' } });
  for (let i = 0; i < 4; i++) assert.equal(a.runner.dispatch(cp.sign(other(i))).ok, true);
  const busy = a.runner.dispatch(cp.sign(other(4)));
  assert.equal(!busy.ok && busy.error.code, 'BUSY');
  const draining = a.runner.drain(5000);
  const late = a.runner.dispatch(cp.sign(other(5)));
  assert.equal(!late.ok && late.error.code, 'BUSY');
  release();
  assert.deepEqual(await draining, []);
  assert.equal(outbox.pending().filter((e) => e.type === 'result').length, 4);
  a.close();
});

test('an engine that throws still yields a failed result, never silence', async () => {
  const dir = tempDir();
  const a = open(
    dir,
    scriptedEngine(async () => {
      throw new Error('boom');
    }),
  );
  const p = payload();
  a.runner.dispatch(cp.sign(p));
  await until(() => a.outbox.isFinal(p.jobId));
  const last = a.outbox.pending().at(-1)!;
  assert.equal(last.type === 'result' && last.result.status, 'failed');
  assert.equal(last.type === 'result' && last.result.errorCode, 'INTERNAL');
  a.close();
});

/** An engine whose runs end when the test says so, and which records how many run at once per target. */
function gatedEngine() {
  const gates = new Map<string, (r: ExecResult) => void>();
  const started: string[] = [];
  let concurrentSameTarget = 0;
  const active = new Map<number, number>();
  const engine = scriptedEngine(async (o) => {
    const n = (active.get(o.pid) ?? 0) + 1;
    active.set(o.pid, n);
    concurrentSameTarget = Math.max(concurrentSameTarget, n);
    const id = o.code;
    started.push(id);
    try {
      return await new Promise<ExecResult>((resolve) => {
        gates.set(id, resolve);
        o.signal?.addEventListener('abort', () =>
          resolve({ status: 'cancelled', errorCode: 'CANCELLED', message: 'stopped', output: 'so far' }),
        );
      });
    } finally {
      active.set(o.pid, active.get(o.pid)! - 1);
    }
  });
  return {
    engine,
    started,
    maxSameTarget: () => concurrentSameTarget,
    release: (id: string, r: ExecResult = { status: 'succeeded', output: `${id}\n` }) => gates.get(id)!(r),
  };
}

const job = (name: string, pid = 4242, over: Parameters<typeof payload>[0] = {}) =>
  payload({ code: name, target: { pid, startTime: '1000' }, ...over });

test('a second job for the same target waits, says behind which job, and runs only after the first', async () => {
  const dir = tempDir();
  const g = gatedEngine();
  const a = open(dir, g.engine);
  const [j1, j2, j3, other] = [job('one'), job('two'), job('three'), job('other', 7777)];
  for (const j of [j1, j2, j3, other])
    assert.deepEqual(a.runner.dispatch(cp.sign(j)), { ok: true, accepted: true });
  await until(() => g.started.length === 2);
  assert.deepEqual(g.started, ['one', 'other'], 'another target runs concurrently');
  assert.deepEqual(a.runner.queuedIds(), [j2.jobId, j3.jobId]);
  const queued = a.outbox.pending().filter((e) => e.type === 'queued');
  assert.deepEqual(
    queued.map((e) => e.type === 'queued' && [e.jobId, e.behindJobId, e.ahead]),
    [
      [j2.jobId, j1.jobId, 1],
      [j3.jobId, j1.jobId, 2],
    ],
  );
  assert.equal(
    a.outbox.record(j2.jobId)?.startedAt,
    null,
    'not started: known after a crash that nothing ran',
  );
  g.release('one');
  await until(() => g.started.length === 3);
  assert.equal(g.started[2], 'two');
  assert.ok(a.outbox.record(j2.jobId)?.startedAt);
  g.release('two');
  await until(() => g.started.length === 4);
  g.release('three');
  g.release('other');
  await until(() => [j1, j2, j3, other].every((j) => a.outbox.isFinal(j.jobId)));
  assert.equal(g.maxSameTarget(), 1, 'never two runs in one target at once');
  assert.deepEqual(
    readAuditTail(dir, 20)
      .filter((e) => e.event === 'queued')
      .map((e) => e.behind),
    [j1.jobId, j1.jobId],
  );
  a.close();
});

test('a cancel for a queued job ends it cancelled without running; a running one is aborted and reported by status', async () => {
  const dir = tempDir();
  const g = gatedEngine();
  const a = open(dir, g.engine);
  const [j1, j2, j3] = [job('first'), job('second'), job('third')];
  for (const j of [j1, j2, j3]) a.runner.dispatch(cp.sign(j));
  await until(() => g.started.length === 1);
  assert.equal(a.runner.cancel(j2.jobId), true);
  const r2 = a.outbox.pending().find((e) => e.jobId === j2.jobId && e.type === 'result');
  assert.ok(r2 && r2.type === 'result');
  assert.equal(r2.result.status, 'cancelled');
  assert.equal(r2.result.errorCode, 'CANCELLED');
  assert.match(r2.result.message!, /cancelled while queued.*never started; nothing ran/);
  assert.equal(a.runner.cancel(j1.jobId), true);
  await until(() => a.outbox.isFinal(j1.jobId));
  const r1 = a.outbox.pending().find((e) => e.jobId === j1.jobId && e.type === 'result');
  assert.equal(
    r1?.type === 'result' && r1.result.status,
    'cancelled',
    'the engine said cancelled: so does the agent',
  );
  await until(() => g.started.length === 2);
  assert.deepEqual(g.started, ['first', 'third'], 'the cancelled queued job never reached the engine');
  g.release('third');
  await until(() => a.outbox.isFinal(j3.jobId));
  const audit = readAuditTail(dir, 30);
  assert.deepEqual(
    audit.filter((e) => e.event === 'cancel_requested').map((e) => [e.jobId, e.outcome]),
    [
      [j2.jobId, 'queued'],
      [j1.jobId, 'running'],
    ],
  );
  assert.deepEqual(
    audit.filter((e) => e.event === 'finished' && e.jobId !== j3.jobId).map((e) => e.outcome),
    ['cancelled', 'cancelled'],
  );
  a.close();
});

test('a queued job whose notAfter passes ends refused EXPIRED without running', async () => {
  const dir = tempDir();
  const g = gatedEngine();
  const a = open(dir, g.engine);
  const j1 = job('long');
  const j2 = job('late', 4242, { notAfter: new Date(Date.now() + 300).toISOString() });
  a.runner.dispatch(cp.sign(j1));
  assert.equal(a.runner.dispatch(cp.sign(j2)).ok, true);
  await until(() => a.outbox.isFinal(j2.jobId));
  const ev = a.outbox.pending().find((e) => e.jobId === j2.jobId && e.type === 'refused');
  assert.equal(ev?.type === 'refused' && ev.code, 'EXPIRED');
  assert.match(ev?.type === 'refused' ? ev.message : '', /while queued.*nothing ran/);
  g.release('long');
  await until(() => a.outbox.isFinal(j1.jobId));
  assert.deepEqual(g.started, ['long']);
  a.close();
});

test('at shutdown queued jobs end refused INTERRUPTED; after a crash a queued job is ended the same way, never run', async () => {
  const dir = tempDir();
  const g = gatedEngine();
  const a = open(dir, g.engine);
  const [j1, j2] = [job('running'), job('waiting')];
  a.runner.dispatch(cp.sign(j1));
  a.runner.dispatch(cp.sign(j2));
  await until(() => g.started.length === 1);
  const alive = setInterval(() => {}, 1000); // drain's own timers are unref'd, as the service keeps the loop alive
  const draining = a.runner.drain(50, 1000);
  assert.equal(a.outbox.isFinal(j2.jobId), true);
  const ev = a.outbox.pending().find((e) => e.jobId === j2.jobId && e.type === 'refused');
  assert.equal(ev?.type === 'refused' && ev.code, 'INTERRUPTED');
  assert.deepEqual(await draining, [], 'the running job was aborted after the grace and reported');
  clearInterval(alive);
  assert.equal(a.outbox.pending().find((e) => e.jobId === j1.jobId && e.type === 'result')?.type, 'result');
  a.close();

  // A crash while a job waited: its journal says it never started.
  const dir2 = tempDir();
  const g2 = gatedEngine();
  const b = open(dir2, g2.engine);
  const [k1, k2] = [job('k1'), job('k2')];
  b.runner.dispatch(cp.sign(k1));
  b.runner.dispatch(cp.sign(k2));
  await until(() => g2.started.length === 1);
  b.close(); // as if killed: no final events
  const c = open(dir2, g2.engine);
  assert.deepEqual(c.unfinished.map((r) => r.jobId).sort(), [k1.jobId, k2.jobId].sort());
  await c.runner.recover(c.unfinished.filter((r) => r.jobId === k2.jobId));
  const r = c.outbox.pending().find((e) => e.jobId === k2.jobId && e.type === 'refused');
  assert.equal(r?.type === 'refused' && r.code, 'INTERRUPTED');
  assert.match(r?.type === 'refused' ? r.message : '', /never started.*nothing ran/);
  assert.deepEqual(g2.started, ['k1'], 'the queued job is never run after a restart');
  c.close();
});

test('the engine gets no path from a job: nothing a job says can point a read at the agent state', async () => {
  const dir = tempDir();
  const engine = scriptedEngine(async () => ({ status: 'succeeded', output: '' }));
  const a = open(dir, engine);
  // A signed job carrying path-like extras (a compromised control plane, or a future field) is not a job.
  const base = payload();
  const withPaths = {
    ...base,
    stagingDirs: [dir],
    procRoot: dir,
    options: { ...base.options, stagingDirs: [dir], outputPath: join(dir, 'agent.key') },
  } as unknown as Parameters<typeof cp.sign>[0];
  const ack = a.runner.dispatch(cp.sign(withPaths));
  assert.equal(
    !ack.ok && ack.error.code,
    'BAD_SIGNATURE',
    'fields outside the schema never reach the checks',
  );
  assert.equal(engine.runs.length, 0);
  // A valid job: the run's options are the target, the code and its limits, nothing that names a file.
  const p = payload();
  assert.equal(a.runner.dispatch(cp.sign(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  const run = engine.runs[0]!;
  assert.deepEqual(Object.keys(run).sort(), [
    'backend',
    'budgetMs',
    'code',
    'expectStartTime',
    'inline',
    'onOutput',
    'onState',
    'params',
    'pickupTimeoutMs',
    'pid',
    'runId',
    'signal',
    'thread',
    'wake',
  ]);
  // The run id is derived from the job id (hex, no path), so a restarted agent finds the run again.
  assert.equal(run.runId, runIdOf(p.jobId));
  assert.match(run.runId ?? '', /^[0-9a-f]{32}$/);
  assert.ok(!JSON.stringify(run).includes(dir), 'no option of the run names the state directory');
  a.close();
});

test('output and results the engine hands over un-encoded are journalled as safe text', async () => {
  const dir = tempDir();
  const engine = scriptedEngine(async (o) => {
    o.onOutput?.('a\u0000b\n');
    return { status: 'succeeded', output: 'a\u0000b\n', result: { s: '\ud83d' } };
  });
  const a = open(dir, engine);
  const p = payload();
  a.runner.dispatch(cp.sign(p));
  await until(() => a.outbox.isFinal(p.jobId));
  const events = a.outbox.pending();
  const out = events.find((e) => e.type === 'output');
  assert.equal(out?.type === 'output' && out.chunk, 'a\u{10FF00}b\n');
  const res = events.find((e) => e.type === 'result');
  assert.ok(res?.type === 'result');
  assert.equal(res.result.output, 'a\u{10FF00}b\n');
  assert.deepEqual(res.result.result, { s: '\u{10FFED}\u{10FFA0}\u{10FFBD}' });
  a.close();
});

// ---- protocol v2 and inspections --------------------------------------------------------------------------

const engineOk = () => scriptedEngine(async () => ({ status: 'succeeded', output: '' }));

test('a v2 job runs on the thread it names: { tid } is the engine tid, main is the default thread', async () => {
  const dir = tempDir();
  const engine = engineOk();
  const a = open(dir, engine);
  const tid = payloadV2({ options: { ...payloadV2().options, thread: { tid: 77 } } });
  const main = payloadV2({ target: { pid: 4343, startTime: '1000' } });
  assert.equal(a.runner.dispatch(cp.signV2(tid)).ok, true);
  assert.equal(a.runner.dispatch(cp.signV2(main)).ok, true);
  await until(() => a.outbox.isFinal(tid.jobId) && a.outbox.isFinal(main.jobId));
  assert.equal(engine.runs.find((r) => r.pid === 4242)!.tid, 77);
  assert.equal(engine.runs.find((r) => r.pid === 4343)!.tid, undefined);
  a.close();
});

test('thread auto with the sys backend runs on the main thread and says so in the audit and in a pickup timeout', async () => {
  const dir = tempDir();
  const engine = scriptedEngine(async () => ({
    status: 'pickup_timeout',
    errorCode: 'PICKUP_TIMEOUT',
    message: 'thread 4242 did not reach a safe point',
    output: '',
  }));
  const a = open(dir, engine);
  const p = payloadV2({ options: { ...payloadV2().options, thread: 'auto', backend: 'sys' } });
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  assert.equal(engine.runs[0]!.tid, undefined);
  assert.equal(engine.runs[0]!.thread, 'main');
  const started = readAuditTail(dir, 10).find((e) => e.event === 'started')!;
  assert.equal(started.threadUsed, 'main');
  assert.match(String(started.note), /thread auto runs on the main thread/);
  const res = a.outbox.pending().at(-1)!;
  assert.match(res.type === 'result' ? (res.result.message ?? '') : '', /asked for thread auto/);
  a.close();
});

test("thread auto is handed to the engine as any-thread (the engine's auto mode), audited as such", async () => {
  const dir = tempDir();
  const engine = engineOk();
  const a = open(dir, engine);
  const p = payloadV2({ options: { ...payloadV2().options, thread: 'auto' } });
  a.runner.dispatch(cp.signV2(p));
  await until(() => a.outbox.isFinal(p.jobId));
  a.close();
  assert.equal(engine.runs[0]!.thread, 'auto');
  assert.equal(engine.runs[0]!.tid, undefined);
  const started = readAuditTail(dir, 10).find((e) => e.event === 'started')!;
  assert.equal(started.threadUsed, 'auto');
  assert.equal(started.note, undefined);
});

test('the content hash, approvals and break-glass of a v2 job are in its journal and every audit entry', async () => {
  const dir = tempDir();
  const a = open(dir, engineOk());
  const p = payloadV2({ approvals: ['att_1', 'att_2'], breakGlass: true, contentHash: 'e'.repeat(64) });
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  const rec = a.outbox.record(p.jobId)!;
  assert.equal(rec.v, 2);
  assert.equal(rec.contentHash, 'e'.repeat(64));
  assert.deepEqual(rec.approvals, ['att_1', 'att_2']);
  assert.equal(rec.breakGlass, true);
  const audit = readAuditTail(dir, 10).filter((e) => e.jobId === p.jobId);
  assert.deepEqual(
    audit.map((e) => e.event),
    ['received', 'started', 'finished'],
  );
  for (const e of audit) {
    assert.equal(e.contentHash, 'e'.repeat(64), e.event);
    assert.deepEqual(e.approvals, ['att_1', 'att_2'], e.event);
    assert.equal(e.breakGlass, true, e.event);
  }
  assert.equal(audit[0]!.v, 2);
  a.close();
});

test('a v2 job asking to wake is refused POLICY_WAKE by default, durably, and never reaches the engine', () => {
  const dir = tempDir();
  const engine = engineOk();
  const a = open(dir, engine);
  const p = payloadV2({ options: { ...payloadV2().options, wake: true } });
  const ack = a.runner.dispatch(cp.signV2(p));
  assert.equal(!ack.ok && ack.error.code, 'POLICY_WAKE');
  const [ev] = a.outbox.pending();
  assert.equal(ev?.type === 'refused' && ev.code, 'POLICY_WAKE');
  assert.equal(engine.runs.length, 0);
  a.close();
});

test('where the policy allows wake, the job is handed to the engine with wake and audited so', async () => {
  const dir = tempDir();
  const engine = engineOk();
  const a = open(dir, engine, { allowRoot: true, allowWake: true });
  const p = payloadV2({ options: { ...payloadV2().options, wake: true } });
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  a.close();
  assert.equal(engine.runs[0]!.wake, true);
  const started = readAuditTail(dir, 10).find((e) => e.event === 'started')!;
  assert.equal(started.wake, true);
});

function stacksReport(over: Partial<StacksReport> = {}): StacksReport {
  return StacksReport.parse({
    pid: 4242,
    nsPid: 4242,
    pythonVersion: '3.14.0',
    status: 'complete',
    readAt: new Date().toISOString(),
    durationMs: 1.5,
    bytesRead: 1000,
    errors: [],
    remoteDebugEnabled: true,
    interpreters: [{ id: 0, threads: 1, remoteDebugEnabled: true }],
    threads: [
      {
        tid: 4242,
        hostTid: 4242,
        name: 'python3',
        main: true,
        interpreterId: 0,
        holdsGil: false,
        state: null,
        frames: [{ function: 'main', file: '/app.py', line: 3 }],
        truncated: false,
        error: null,
      },
    ],
    ...over,
  });
}

/** An inspector whose answers the test scripts (the real child is covered by inspect.test.ts and the int tests). */
function scriptedInspector(answer: (req: InspectRequest, signal: AbortSignal) => Promise<InspectOutcome>) {
  const reqs: InspectRequest[] = [];
  const inspector: Inspector = {
    inspect: (req, opts) => {
      reqs.push(req);
      return answer(req, opts.signal);
    },
  };
  return { inspector, reqs };
}

const report = (r: StacksReport = stacksReport()): InspectOutcome => ({
  kind: 'report',
  what: 'stacks',
  report: r,
  note: null,
});

test('an inspection returns the report as its result; partial says what partial means', async () => {
  const dir = tempDir();
  const partial = stacksReport({
    status: 'partial',
    errors: [{ code: 'TORN', message: 'thread list kept changing' }],
  });
  const complete = stacksReport();
  let next = report(complete);
  const { inspector, reqs } = scriptedInspector(async () => next);
  const engine = engineOk();
  const a = open(dir, engine, { allowRoot: true }, { inspector });
  const p = inspectPayload();
  assert.deepEqual(a.runner.dispatch(cp.signV2(p)), { ok: true, accepted: true });
  await until(() => a.outbox.isFinal(p.jobId));
  const res = a.outbox.pending().find((e) => e.jobId === p.jobId && e.type === 'result')!;
  assert.ok(res.type === 'result');
  assert.equal(res.result.status, 'succeeded');
  assert.deepEqual(res.result.result, complete as never);
  assert.match(res.result.message ?? '', /1 thread\(s\) read from memory.*no code ran/);
  assert.equal(engine.runs.length, 0, 'the engine never runs anything for an inspection');
  assert.equal(reqs[0]!.allowOptedOut, false);
  assert.equal(reqs[0]!.what, 'stacks');
  next = report(partial);
  const q = inspectPayload();
  a.runner.dispatch(cp.signV2(q));
  await until(() => a.outbox.isFinal(q.jobId));
  const pr = a.outbox.pending().find((e) => e.jobId === q.jobId && e.type === 'result')!;
  assert.ok(pr.type === 'result');
  assert.equal(pr.result.status, 'succeeded');
  assert.match(pr.result.message ?? '', /^partial report: .*what could be read is there.*TORN/);
  const audit = readAuditTail(dir, 10).filter((e) => e.jobId === p.jobId);
  assert.deepEqual(
    audit.map((e) => [e.event, e.action, e.what]),
    [
      ['received', 'inspect', 'stacks'],
      ['started', 'inspect', 'stacks'],
      ['finished', 'inspect', 'stacks'],
    ],
  );
  a.close();
});

test('a failed report, a timeout, an invalid answer and a target gone are honest results, never success', async () => {
  const dir = tempDir();
  const answers: InspectOutcome[] = [
    report(
      stacksReport({
        status: 'failed',
        threads: [],
        errors: [{ code: 'PERMISSION_DENIED', message: 'no ptrace rights' }],
      }),
    ),
    report(
      stacksReport({ status: 'failed', threads: [], errors: [{ code: 'CORRUPT', message: 'garbage' }] }),
    ),
    { kind: 'timeout', afterMs: 20_000 },
    { kind: 'invalid', message: 'the stacks report does not parse' },
    { kind: 'gone', message: 'process 4242 has exited' },
    { kind: 'not_python', message: 'process 4242 is not a CPython process' },
  ];
  const { inspector } = scriptedInspector(async () => answers.shift()!);
  const a = open(dir, engineOk(), { allowRoot: true }, { inspector });
  const expected = [
    ['failed', 'PERMISSION_DENIED'],
    ['failed', 'INSPECT_FAILED'],
    ['failed', 'INSPECT_TIMEOUT'],
    ['failed', 'INSPECT_INVALID'],
    ['target_gone', 'TARGET_GONE'],
    ['failed', 'NOT_PYTHON'],
  ];
  for (const [status, code] of expected) {
    const p = inspectPayload();
    a.runner.dispatch(cp.signV2(p));
    await until(() => a.outbox.isFinal(p.jobId));
    const res = a.outbox.pending().find((e) => e.jobId === p.jobId && e.type === 'result')!;
    assert.ok(res.type === 'result');
    assert.deepEqual([res.result.status, res.result.errorCode], [status, code]);
    assert.match(res.result.message ?? '', /Nothing ran in the target/);
  }
  a.close();
});

test('an inspection does not wait behind a running job for the same target, nor hold one up', async () => {
  const dir = tempDir();
  const g = gatedEngine();
  const { inspector } = scriptedInspector(async () => report());
  const a = open(dir, g.engine, { allowRoot: true }, { inspector });
  const running = job('first');
  assert.equal(a.runner.dispatch(cp.sign(running)).ok, true);
  await until(() => g.started.length === 1);
  const p = inspectPayload();
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  assert.ok(!a.outbox.pending().some((e) => e.jobId === p.jobId && e.type === 'queued'), 'never queued');
  assert.equal(a.outbox.isFinal(running.jobId), false, 'the job still runs');
  g.release('first');
  await until(() => a.outbox.isFinal(running.jobId));
  a.close();
});

test('beyond inspection.maxConcurrent inspections are refused BUSY; a cancel kills a read in progress', async () => {
  const dir = tempDir();
  const { inspector } = scriptedInspector(
    (_req, signal) =>
      new Promise((resolve) => signal.addEventListener('abort', () => resolve({ kind: 'cancelled' }))),
  );
  const a = open(
    dir,
    engineOk(),
    { allowRoot: true },
    { inspector, settings: { inspection: { maxConcurrent: 1 } } },
  );
  const first = inspectPayload();
  assert.equal(a.runner.dispatch(cp.signV2(first)).ok, true);
  const second = a.runner.dispatch(cp.signV2(inspectPayload()));
  assert.equal(!second.ok && second.error.code, 'BUSY');
  assert.match(!second.ok ? second.error.message : '', /inspection\.maxConcurrent = 1/);
  assert.equal(a.runner.cancel(first.jobId), true);
  await until(() => a.outbox.isFinal(first.jobId));
  const res = a.outbox.pending().find((e) => e.jobId === first.jobId && e.type === 'result')!;
  assert.equal(res.type === 'result' && res.result.status, 'cancelled');
  a.close();
});

test('a process the child finds opted out is refused POLICY_OPTED_OUT after acceptance; the policy switch is passed on', async () => {
  const dir = tempDir();
  const { inspector, reqs } = scriptedInspector(async (req) =>
    req.allowOptedOut ? report() : { kind: 'opted_out', remoteDebugEnabled: false },
  );
  const a = open(dir, engineOk(), { allowRoot: true }, { inspector });
  const p = inspectPayload();
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  const ev = a.outbox.pending().find((e) => e.jobId === p.jobId && e.type === 'refused')!;
  assert.equal(ev.type === 'refused' && ev.code, 'POLICY_OPTED_OUT');
  assert.match(ev.type === 'refused' ? ev.message : '', /allowOptedOut/);
  a.close();
  const dir2 = tempDir();
  const b = open(dir2, engineOk(), { allowRoot: true, inspect: { allowOptedOut: true } }, { inspector });
  const q = inspectPayload();
  b.runner.dispatch(cp.signV2(q));
  await until(() => b.outbox.isFinal(q.jobId));
  assert.equal(reqs.at(-1)!.allowOptedOut, true);
  const res = b.outbox.pending().find((e) => e.jobId === q.jobId && e.type === 'result')!;
  assert.equal(res.type === 'result' && res.result.status, 'succeeded');
  b.close();
});

test('what was read is discarded when the pid changed hands or the process changed its uids meanwhile', async () => {
  const dir = tempDir();
  let facts = {
    pid: 4242,
    startTime: '1000',
    uids: [1001, 1001, 1001, 1001] as [number, number, number, number],
    gid: 1001,
  };
  const { inspector } = scriptedInspector(async () => {
    // While the child reads, the target runs a set-uid program (same pid, same start time, new uids).
    facts = { ...facts, uids: [1001, 0, 0, 0] };
    return report();
  });
  const a = open(dir, engineOk(), { allowRoot: false }, { inspector, readTarget: () => facts });
  const p = inspectPayload();
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  await until(() => a.outbox.isFinal(p.jobId));
  const res = a.outbox.pending().find((e) => e.jobId === p.jobId && e.type === 'result')!;
  assert.ok(res.type === 'result');
  assert.equal(res.result.errorCode, 'INSPECT_DISCARDED');
  assert.equal(res.result.result, undefined, 'nothing of the report is kept');
  a.close();

  const dir2 = tempDir();
  let alive = true;
  const gone = scriptedInspector(async () => {
    alive = false;
    return report();
  });
  const b = open(
    dir2,
    engineOk(),
    { allowRoot: true },
    {
      inspector: gone.inspector,
      readTarget: (pid) =>
        alive ? { pid, startTime: '1000', uids: [1001, 1001, 1001, 1001], gid: 1001 } : null,
    },
  );
  const q = inspectPayload();
  b.runner.dispatch(cp.signV2(q));
  await until(() => b.outbox.isFinal(q.jobId));
  const r2 = b.outbox.pending().find((e) => e.jobId === q.jobId && e.type === 'result')!;
  assert.ok(r2.type === 'result');
  assert.deepEqual([r2.result.status, r2.result.result], ['target_gone', undefined]);
  b.close();
});

test('an inspection in progress when the agent died ends INSPECT_INTERRUPTED on restart, never read again', async () => {
  const dir = tempDir();
  const { inspector } = scriptedInspector(() => new Promise<InspectOutcome>(() => undefined));
  const a = open(dir, engineOk(), { allowRoot: true }, { inspector });
  const p = inspectPayload();
  assert.equal(a.runner.dispatch(cp.signV2(p)).ok, true);
  a.close(); // the agent "dies": the journal has the job, no result
  const again = scriptedInspector(async () => report());
  const b = open(dir, engineOk(), { allowRoot: true }, { inspector: again.inspector });
  assert.equal(b.unfinished.length, 1);
  await b.runner.recover(b.unfinished);
  const res = b.outbox.pending().find((e) => e.jobId === p.jobId && e.type === 'result')!;
  assert.ok(res.type === 'result');
  assert.equal(res.result.errorCode, 'INSPECT_INTERRUPTED');
  assert.equal(again.reqs.length, 0);
  const ack = b.runner.dispatch(cp.signV2(p));
  assert.equal(!ack.ok && ack.error.code, 'REPLAYED');
  b.close();
});

test('an agent without an inspector refuses inspections instead of pretending', () => {
  const dir = tempDir();
  const a = open(dir, engineOk());
  const ack = a.runner.dispatch(cp.signV2(inspectPayload()));
  assert.equal(!ack.ok && ack.error.code, 'UNSUPPORTED_OPTION');
  a.close();
});
