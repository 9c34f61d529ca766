import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { canonicalJson } from '@pyreach/protocol/canonical';
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
