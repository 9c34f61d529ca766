import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Outbox, type JobRecord } from '../src/outbox';
import { SeenStore } from '../src/seen';
import { tempDir } from './helpers';

const rec = (jobId: string, receivedAt = new Date().toISOString()): JobRecord => ({
  jobId,
  requestId: 'req',
  receivedAt,
  codeHash: 'a'.repeat(64),
  kind: 'custom',
  scriptId: null,
  target: { pid: 1, startTime: '1' },
  notAfter: new Date(Date.now() + 60_000).toISOString(),
  budgetSeconds: 30,
  pickupTimeoutSeconds: 10,
});

test('events are numbered per job from 1 and only acknowledged ones leave the pending list', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('a'));
  o.createJob(rec('b'));
  o.append('a', { type: 'state', jobId: 'a', state: 'staged' });
  o.append('b', { type: 'output', jobId: 'b', chunk: 'x' });
  o.append('a', { type: 'output', jobId: 'a', chunk: 'hi' });
  assert.deepEqual(
    o.pending().map((e) => `${e.jobId}:${e.seq}`),
    ['a:1', 'a:2', 'b:1'],
  );
  o.ack('a', 1);
  o.ack('a', 1); // a duplicate ack changes nothing
  assert.equal(o.depth(), 2);
  assert.equal(o.nextPending()?.seq, 2);
  o.close();
});

test('after a SIGKILL every event written before the kill is pending again, in order, and numbering continues', async () => {
  const dir = tempDir();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./outbox-child.ts', import.meta.url)), dir, 'job1', '25'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let written = 0;
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      written = Math.max(written, ...d.toString().trim().split('\n').map(Number));
      if (written >= 25) resolve();
    });
    child.on('exit', () => reject(new Error('child exited early')));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const o = new Outbox(dir);
  const unfinished = o.open();
  assert.deepEqual(
    unfinished.map((r) => r.jobId),
    ['job1'],
    'the job has no final event: it is reported for recovery',
  );
  const pending = o.pending();
  assert.equal(pending.length, 25);
  assert.deepEqual(
    pending.map((e) => e.seq),
    Array.from({ length: 25 }, (_, i) => i + 1),
  );
  assert.equal(pending[24]!.type === 'output' && pending[24]!.chunk, 'line 24\n');
  for (let s = 1; s <= 10; s++) o.ack('job1', s);
  const next = o.append('job1', { type: 'result', jobId: 'job1', result: { status: 'failed', output: '' } });
  assert.equal(next.seq, 26);
  o.close();
  // And once more: acks survive a reopen too.
  const again = new Outbox(dir);
  assert.deepEqual(again.open(), [], 'final event recorded');
  assert.equal(again.depth(), 16);
  assert.equal(again.nextPending()?.seq, 11);
  again.close();
});

test('a torn last line from a crash mid-append is dropped and the journal stays appendable', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('t'));
  o.append('t', { type: 'output', jobId: 't', chunk: 'one' });
  o.close();
  appendFileSync(join(dir, 'jobs', 't', 'events.jsonl'), '{"type":"output","jobId":"t","seq":2,"at":"2026-');
  const o2 = new Outbox(dir);
  o2.open();
  assert.equal(o2.depth(), 1);
  const ev = o2.append('t', { type: 'output', jobId: 't', chunk: 'two' });
  assert.equal(ev.seq, 2);
  o2.close();
  const lines = readFileSync(join(dir, 'jobs', 't', 'events.jsonl'), 'utf8')
    .trim()
    .split('\n');
  assert.equal(lines.length, 2);
  assert.equal(JSON.parse(lines[1]!).chunk, 'two');
});

test('jobs are delivered in the order they were received, across a reopen', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('zzz', '2026-01-01T00:00:00.000Z'));
  o.createJob(rec('aaa', '2026-01-01T00:00:01.000Z'));
  o.append('zzz', { type: 'output', jobId: 'zzz', chunk: '1' });
  o.append('aaa', { type: 'output', jobId: 'aaa', chunk: '2' });
  o.close();
  const o2 = new Outbox(dir);
  o2.open();
  assert.deepEqual(
    o2.pending().map((e) => e.jobId),
    ['zzz', 'aaa'],
  );
  o2.close();
});

test('no event can follow a final one', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('f'));
  o.append('f', { type: 'refused', jobId: 'f', code: 'EXPIRED', message: 'late' });
  assert.throws(() => o.append('f', { type: 'output', jobId: 'f', chunk: 'x' }), /final event/);
  o.close();
});

test('fully delivered journals are pruned but their ids stay in the replay guard', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob({ ...rec('old'), notAfter: new Date(Date.now() - 2 * 86_400_000).toISOString() });
  o.append('old', { type: 'refused', jobId: 'old', code: 'EXPIRED', message: 'late' });
  assert.equal(o.prune(86_400_000), 0, 'unacknowledged: kept');
  o.ack('old', 1);
  assert.equal(o.prune(86_400_000), 1);
  assert.equal(o.has('old'), false);
  o.close();
  const seen = new SeenStore(dir);
  seen.open();
  seen.add('old', new Date(Date.now() - 2 * 86_400_000).toISOString());
  seen.close();
  const s2 = new SeenStore(dir);
  s2.open();
  assert.equal(s2.has('old'), true, 'kept until a week past notAfter');
  s2.close();
  const s3 = new SeenStore(dir, 86_400_000);
  s3.open();
  assert.equal(s3.has('old'), false, 'compacted once expiry alone refuses it');
  s3.close();
});

test('waiting for changes does not accumulate waiters while idle', async () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  for (let i = 0; i < 20; i++) await o.changed(1);
  assert.equal(o.waiterCount, 0);
  const waiting = o.changed(10_000);
  o.createJob(rec('w'));
  o.append('w', { type: 'output', jobId: 'w', chunk: 'x' });
  await waiting;
  assert.equal(o.waiterCount, 0);
  o.close();
});
