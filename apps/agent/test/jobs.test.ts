import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExecResult } from '@pyreach/protocol/exec';
import { AuditLog, readAuditTail } from '../src/audit';
import { AgentConfig } from '../src/config';
import type { Engine, RunOptions } from '../src/engine';
import { JobRunner } from '../src/jobs';
import { Outbox } from '../src/outbox';
import { SeenStore } from '../src/seen';
import { payload, signer, silentLog, tempDir } from './helpers';

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

function open(dir: string, engine: Engine, policy: object = { allowRoot: true }) {
  const outbox = new Outbox(dir);
  const unfinished = outbox.open();
  const seen = new SeenStore(dir);
  seen.open();
  const audit = new AuditLog(dir);
  const runner = new JobRunner({
    config: AgentConfig.parse({ stateDir: dir, policy }),
    agentId: 'agent_1',
    pinnedKey: cp.publicKey,
    outbox,
    seen,
    audit,
    engine,
    log: silentLog,
    userName: () => 'app',
    readTarget: (pid) => ({ pid, startTime: '1000', uids: [1001, 1001, 1001, 1001], gid: 1001 }),
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
