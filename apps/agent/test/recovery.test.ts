import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { decodeToBytes } from '@pyreach/protocol/text';
import type { JobRecord } from '../src/outbox';
import { recoverJob } from '../src/recovery';
import { fakeProc, tempDir } from './helpers';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const CODE = 'open("/tmp/x", "a").write("ran\\n")\n';

function setup(files: Record<string, string>) {
  const dir = tempDir();
  const procRoot = fakeProc(dir, 777, { startTime: '5555', uid: 1001 });
  const staging = join(procRoot, '777', 'root', 'tmp', 'pyreach-0123456789abcdef');
  mkdirSync(staging);
  writeFileSync(join(staging, 'code.py'), CODE);
  writeFileSync(join(staging, 'params.json'), JSON.stringify({ a: 1 }));
  for (const [k, v] of Object.entries(files)) writeFileSync(join(staging, k), v);
  const record: JobRecord = {
    jobId: 'j1',
    requestId: 'r1',
    receivedAt: new Date().toISOString(),
    codeHash: sha(CODE),
    paramsHash: sha(canonicalJson({ a: 1 })),
    kind: 'custom',
    scriptId: null,
    target: { pid: 777, startTime: '5555' },
    notAfter: new Date().toISOString(),
    budgetSeconds: 1,
    pickupTimeoutSeconds: 1,
  };
  return { procRoot, staging, record };
}

test("a job the harness finished while the agent was down is reported with the harness's own outcome", async () => {
  const { procRoot, staging, record } = setup({
    'picked.json': '{}',
    'out.txt': 'hello\n',
    'result.json': JSON.stringify({
      status: 'succeeded',
      result: 7,
      pickedUpAt: '2026-01-01T00:00:00Z',
      finishedAt: '2026-01-01T00:00:01Z',
    }),
  });
  const r = await recoverJob(record, { procRoot });
  assert.equal(r.status, 'succeeded');
  assert.equal(r.result, 7);
  assert.equal(r.output, 'hello\n');
  assert.match(r.message ?? '', /read from the harness's own report/);
  assert.equal(existsSync(staging), false, 'staging removed');
});

test('a staged job never picked up is withdrawn so it cannot run later, and reported as such', async () => {
  const { procRoot, staging, record } = setup({ 'run.py': '# harness' });
  const r = await recoverJob(record, { procRoot });
  assert.equal(r.status, 'pickup_timeout');
  assert.match(r.message ?? '', /can never run/);
  assert.equal(existsSync(join(staging, 'run.py')), false);
});

test('a picked-up job that does not report in time is reported as unknown, never as success', async () => {
  const { procRoot, record } = setup({ 'picked.json': '{}' });
  const r = await recoverJob(record, { procRoot, maxWaitMs: 300 });
  assert.equal(r.status, 'failed');
  assert.equal(r.errorCode, 'HARNESS_ERROR');
  assert.match(r.message ?? '', /outcome unknown/);
});

test('an empty or partial picked.json (the engine pre-creates it empty) is not a pickup: the job is withdrawn', async () => {
  for (const picked of ['', '{"pickedUpAt": "2026-']) {
    const { procRoot, staging, record } = setup({ 'run.py': '# harness', 'picked.json': picked });
    const r = await recoverJob(record, { procRoot, maxWaitMs: 300 });
    assert.equal(r.status, 'pickup_timeout', `${JSON.stringify(picked)}: ${JSON.stringify(r)}`);
    assert.equal(existsSync(join(staging, 'run.py')), false, 'the harness is gone');
  }
});

test('without a staging directory or with the target gone the outcome is unknown', async () => {
  const { procRoot, record } = setup({});
  const other = { ...record, codeHash: sha('something else') };
  assert.match(
    (await recoverJob(other, { procRoot })).message ?? '',
    /outcome unknown: no staging directory/,
  );
  const restarted = { ...record, target: { pid: 777, startTime: '1' } };
  assert.match((await recoverJob(restarted, { procRoot })).message ?? '', /has exited/);
});

// The target's user owns its staging directory and its whole root (a container): it plants what it likes.
const SECRET = '-----BEGIN PRIVATE KEY----- the agent key -----END PRIVATE KEY-----\n';

function secretFile(): string {
  const p = join(tempDir(), 'agent.key');
  writeFileSync(p, SECRET, { mode: 0o600 });
  return p;
}

const report = JSON.stringify({ status: 'succeeded', result: 1 });

test('an out.txt planted as a link or a hard link to a root-only file is never read into the output', async () => {
  for (const plant of ['symlink', 'hardlink'] as const) {
    const secret = secretFile();
    const { procRoot, staging, record } = setup({ 'picked.json': '{}', 'result.json': report });
    if (plant === 'symlink') symlinkSync(secret, join(staging, 'out.txt'));
    else linkSync(secret, join(staging, 'out.txt'));
    const r = await recoverJob(record, { procRoot });
    assert.ok(!r.output.includes('PRIVATE KEY'), `${plant}: the key is not streamed back`);
    assert.equal(r.output, '');
    assert.equal(readFileSync(secret, 'utf8'), SECRET, `${plant}: the file it pointed at is untouched`);
  }
});

test('a result.json planted as a FIFO does not block recovery', async () => {
  const { procRoot, staging, record } = setup({ 'picked.json': '{}' });
  execFileSync('mkfifo', [join(staging, 'result.json')]);
  const t0 = Date.now();
  const r = await recoverJob(record, { procRoot, maxWaitMs: 300 });
  assert.ok(Date.now() - t0 < 5000);
  assert.match(r.message ?? '', /outcome unknown/);
});

test("a link planted for the target's /tmp (an absolute one resolves on the host) is not followed", async () => {
  const { procRoot, staging, record } = setup({ 'picked.json': '{}', 'result.json': report });
  const root = join(procRoot, '777', 'root');
  const elsewhere = join(tempDir(), 'host-tmp');
  renameSync(join(root, 'tmp'), elsewhere); // the staging directory now lives outside the target's root
  symlinkSync(elsewhere, join(root, 'tmp'));
  const r = await recoverJob(record, { procRoot });
  assert.match(r.message ?? '', /outcome unknown: no staging directory/);
  assert.ok(existsSync(join(elsewhere, staging.split('/').pop()!, 'result.json')), 'nothing removed there');
});

test('removing a staging directory unlinks planted links and never deletes what they point at', async () => {
  const victim = join(tempDir(), 'victim');
  mkdirSync(victim);
  writeFileSync(join(victim, 'keep.txt'), 'keep');
  const { procRoot, staging, record } = setup({ 'picked.json': '{}', 'result.json': report, 'out.txt': 'x' });
  symlinkSync(victim, join(staging, 'sub'));
  const r = await recoverJob(record, { procRoot });
  assert.equal(r.status, 'succeeded');
  assert.equal(existsSync(staging), false);
  assert.equal(readFileSync(join(victim, 'keep.txt'), 'utf8'), 'keep');
});

test('recovered output holding NUL and invalid UTF-8 becomes safe text losslessly', async () => {
  const { procRoot, staging, record } = setup({ 'picked.json': '{}', 'result.json': report });
  writeFileSync(join(staging, 'out.txt'), Buffer.from([0x61, 0x00, 0xff, 0x62, 0x0a]));
  const r = await recoverJob(record, { procRoot });
  assert.equal(r.output, 'a\u{10FF00}\u{10FFFF}b\n');
  assert.deepEqual(Buffer.from(decodeToBytes(r.output)), Buffer.from([0x61, 0x00, 0xff, 0x62, 0x0a]));
});

test('a job cancelled before the agent crashed is recovered as cancelled, never as TIME_BUDGET_EXCEEDED', async () => {
  const { procRoot, record } = setup({
    'picked.json': '{}',
    'out.txt': 'so far\n',
    'result.json': JSON.stringify({
      status: 'failed',
      cancelled: true,
      error: { type: 'X', message: 'stop' },
    }),
  });
  const r = await recoverJob(record, { procRoot });
  assert.equal(r.status, 'cancelled');
  assert.notEqual(r.errorCode, 'TIME_BUDGET_EXCEEDED');
  assert.equal(r.output, 'so far\n');
});
