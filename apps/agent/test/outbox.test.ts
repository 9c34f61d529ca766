import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

test('a report refused for good is replaced under its seq by a REPORT_REFUSED result, and later events stay local', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('p'));
  o.append('p', { type: 'state', jobId: 'p', state: 'staged' });
  o.append('p', { type: 'output', jobId: 'p', chunk: 'poison' });
  o.ack('p', 1);
  const sub = o.reject('p', 2, { code: 'VALIDATION', message: 'job:event payload is invalid: chunk' });
  assert.ok(sub && sub.type === 'result');
  assert.equal(sub.seq, 2, 'the substitute takes the refused seq, so the control plane sees no gap');
  assert.equal(sub.result.status, 'failed');
  assert.equal(sub.result.errorCode, 'REPORT_REFUSED');
  assert.deepEqual(sub.result.refusedReport, {
    seq: 2,
    type: 'output',
    code: 'VALIDATION',
    message: 'job:event payload is invalid: chunk',
  });
  assert.match(sub.result.message!, /output report #2 .*VALIDATION.*kept on the agent's host in .*jobs\/p/);
  // The job goes on (more output, its own result): journalled, never sent.
  o.append('p', { type: 'output', jobId: 'p', chunk: 'more' });
  o.append('p', { type: 'result', jobId: 'p', result: { status: 'succeeded', output: 'more' } });
  assert.deepEqual(o.pending(), [sub]);
  assert.equal(o.depth(), 1);
  o.close();

  // A restart neither resurrects the refused report nor forgets the substitute.
  const o2 = new Outbox(dir);
  assert.deepEqual(o2.open(), [], 'the job is final');
  assert.deepEqual(
    o2.pending().map((e) => [e.seq, e.type, e.type === 'result' && e.result.errorCode]),
    [[2, 'result', 'REPORT_REFUSED']],
  );
  o2.ack('p', 2);
  assert.equal(o2.depth(), 0);
  assert.equal(o2.prune(-Infinity), 1, 'delivered as far as it ever will be: prunable');
  o2.close();
});

test('a refused substitute is dropped for good, never replaced again (no loop)', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('q'));
  o.append('q', { type: 'refused', jobId: 'q', code: 'BUSY', message: 'busy' });
  assert.ok(o.reject('q', 1, { code: 'NOT_FOUND', message: 'unknown job q' }));
  assert.equal(o.reject('q', 1, { code: 'NOT_FOUND', message: 'unknown job q' }), null);
  assert.equal(o.depth(), 0);
  o.close();
  const o2 = new Outbox(dir);
  o2.open();
  assert.equal(o2.depth(), 0, 'still nothing to send after a restart');
  o2.close();
});

test('a deferred job holds back only its own events; other jobs are delivered meanwhile', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('slow'));
  o.createJob(rec('fast'));
  o.append('slow', { type: 'output', jobId: 'slow', chunk: 'a' });
  o.append('slow', { type: 'output', jobId: 'slow', chunk: 'b' });
  o.append('fast', { type: 'output', jobId: 'fast', chunk: 'c' });
  const now = Date.now();
  assert.equal(o.nextPending(now)?.jobId, 'slow');
  o.defer('slow', 5000, now);
  assert.deepEqual([o.nextPending(now)?.jobId, o.nextPending(now)?.seq], ['fast', 1]);
  o.ack('fast', 1);
  assert.equal(o.nextPending(now), null, 'slow:2 never overtakes slow:1');
  assert.equal(o.nextRetryAt(), now + 5000);
  assert.equal(o.nextPending(now + 5000)?.seq, 1);
  o.close();
});

test('the age of the oldest undelivered event is reported, null when the outbox is empty', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  assert.equal(o.oldestAgeSeconds(), null);
  o.createJob(rec('old'));
  o.createJob(rec('new'));
  const t0 = Date.now();
  o.append('old', { type: 'output', jobId: 'old', chunk: 'x', at: new Date(t0 - 90_000).toISOString() });
  o.append('new', { type: 'output', jobId: 'new', chunk: 'y', at: new Date(t0 - 1000).toISOString() });
  assert.equal(o.oldestAgeSeconds(t0), 90);
  o.ack('old', 1);
  assert.equal(o.oldestAgeSeconds(t0), 1);
  o.close();
});

test('text that is not safe text is journalled and sent encoded, never as NUL or a lone surrogate', () => {
  const dir = tempDir();
  const o = new Outbox(dir);
  o.open();
  o.createJob(rec('t'));
  const out = o.append('t', { type: 'output', jobId: 't', chunk: 'a\u0000b' });
  assert.equal(out.type === 'output' && out.chunk, 'a\u{10FF00}b');
  const res = o.append('t', {
    type: 'result',
    jobId: 't',
    result: {
      status: 'failed',
      errorCode: 'USER_EXCEPTION',
      message: 'bad \u001b[31m',
      output: 'x\ud800y',
      result: { 'k\u0000': ['v\udfff'] },
      error: { type: 'E\u0000', message: 'm\u0007', traceback: 't\u0000' },
      thread: { tid: 1, name: 'n\u0000' },
    },
  });
  assert.ok(res.type === 'result');
  assert.equal(res.result.output, 'x\u{10FFED}\u{10FFA0}\u{10FF80}y');
  assert.deepEqual(res.result.result, { 'k\u{10FF00}': ['v\u{10FFED}\u{10FFBF}\u{10FFBF}'] });
  assert.equal(res.result.error?.type, 'E\u{10FF00}');
  assert.equal(res.result.thread?.name, 'n\u{10FF00}');
  assert.equal(res.result.message, 'bad \u{10FF1B}[31m');
  // Already-safe text, escapes included, is not encoded twice.
  o.close();
  const journal = readFileSync(join(dir, 'jobs', 't', 'events.jsonl'), 'utf8');
  assert.ok(!journal.includes('\\u0000'), 'no NUL reaches the journal');
  const o2 = new Outbox(dir);
  o2.open();
  assert.equal(
    (o2.pending()[0] as { chunk: string }).chunk,
    'a\u{10FF00}b',
    'escapes survive a reload as they are',
  );
  o2.close();
});

test('a journal written by the previous agent version (raw text, old rejection lines) still loads and sends safe text', () => {
  const dir = tempDir();
  const d = join(dir, 'jobs', 'legacy');
  mkdirSync(d, { recursive: true });
  const { startedAt: _omit, ...old } = { ...rec('legacy'), startedAt: undefined };
  writeFileSync(join(d, 'job.json'), JSON.stringify(old));
  const at = new Date().toISOString();
  const lines = [
    { type: 'state', jobId: 'legacy', seq: 1, at, state: 'picked_up' },
    { type: 'output', jobId: 'legacy', seq: 2, at, chunk: 'a\u0000b' },
    { type: 'output', jobId: 'legacy', seq: 3, at, chunk: 'c\u0000d' },
  ];
  writeFileSync(join(d, 'events.jsonl'), lines.map((l) => JSON.stringify(l) + '\n').join(''));
  // The old agent recorded a definitive rejection like this and went on delivering.
  writeFileSync(
    join(d, 'acks.jsonl'),
    JSON.stringify({ seq: 1 }) +
      '\n' +
      JSON.stringify({ seq: 2, rejected: { code: 'X', message: 'y' } }) +
      '\n',
  );
  const o = new Outbox(dir);
  const unfinished = o.open();
  assert.deepEqual(
    unfinished.map((r) => [r.jobId, r.startedAt]),
    [['legacy', undefined]],
    'an old record has no startedAt: recovery inspects the target as before',
  );
  assert.deepEqual(
    o.pending().map((e) => [e.seq, (e as { chunk?: string }).chunk]),
    [[3, 'c\u{10FF00}d']],
  );
  o.close();
});
