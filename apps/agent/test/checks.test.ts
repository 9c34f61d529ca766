import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codeHash, signJob } from '@pyreach/protocol/job';
import { getScript } from '@pyreach/scripts';
import { checkJob, type CheckContext } from '../src/checks';
import { PolicyConfig } from '../src/config';
import { payload, signer } from './helpers';

const cp = signer();
const ctx = (over: Partial<CheckContext> = {}): CheckContext => ({
  pinnedKey: cp.publicKey,
  agentId: 'agent_1',
  now: Date.now(),
  clockSkewMs: 30_000,
  policy: PolicyConfig.parse({ allowedUsers: ['*'] }),
  seen: () => false,
  readTarget: (pid) => ({ pid, startTime: '1000', uids: [1001, 1001, 1001, 1001], gid: 1001 }),
  userName: () => 'app',
  ...over,
});

test('a correctly signed, fresh job for this agent and an unchanged target passes', () => {
  const r = checkJob(cp.sign(payload()), ctx());
  assert.equal(r.ok, true);
});

test('a job signed by another key is refused as UNKNOWN_KEY and not trusted', () => {
  const r = checkJob(signer().sign(payload()), ctx());
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.code, 'UNKNOWN_KEY');
  assert.equal(!r.ok && r.trusted, false);
});

test('a forged job that claims the pinned key id is refused as BAD_SIGNATURE', () => {
  const other = signer();
  const env = signJob(payload(), other.privateKey, other.publicKey);
  const forged = { ...env, keyId: cp.sign(payload()).keyId };
  const r = checkJob(forged, ctx());
  assert.equal(!r.ok && r.code, 'BAD_SIGNATURE');
});

test('a job whose payload was altered after signing is refused', () => {
  const env = cp.sign(payload());
  const r = checkJob({ ...env, payload: { ...env.payload, target: { pid: 1, startTime: '1' } } }, ctx());
  assert.equal(!r.ok && r.code, 'BAD_SIGNATURE');
});

test('garbage is refused as MALFORMED', () => {
  const r = checkJob({ hello: 'world' }, ctx());
  assert.equal(!r.ok && r.code, 'MALFORMED');
});

test('an expired job is refused beyond the clock-skew allowance only', () => {
  const notAfter = new Date(Date.now() - 10_000).toISOString();
  assert.equal(checkJob(cp.sign(payload({ notAfter })), ctx()).ok, true, 'within 30 s skew');
  const r = checkJob(cp.sign(payload({ notAfter: new Date(Date.now() - 31_000).toISOString() })), ctx());
  assert.equal(!r.ok && r.code, 'EXPIRED');
  assert.equal(!r.ok && r.trusted, true);
});

test('a replayed job id is refused and not trusted (its events belong to the first run)', () => {
  const p = payload();
  const r = checkJob(cp.sign(p), ctx({ seen: (id) => id === p.jobId }));
  assert.equal(!r.ok && r.code, 'REPLAYED');
  assert.equal(!r.ok && r.trusted, false);
});

test('a job for another agent is refused as WRONG_AGENT', () => {
  const r = checkJob(cp.sign(payload({ agentId: 'agent_2' })), ctx());
  assert.equal(!r.ok && r.code, 'WRONG_AGENT');
});

test('a target whose pid now has another start time, or is gone, is refused as TARGET_CHANGED', () => {
  const r = checkJob(
    cp.sign(payload()),
    ctx({ readTarget: (pid) => ({ pid, startTime: '2000', uids: [1001, 1001, 1001, 1001], gid: 0 }) }),
  );
  assert.equal(!r.ok && r.code, 'TARGET_CHANGED');
  const gone = checkJob(cp.sign(payload()), ctx({ readTarget: () => null }));
  assert.equal(!gone.ok && gone.code, 'TARGET_CHANGED');
});

test('root targets are refused unless allowRoot', () => {
  const root = (pid: number) => ({
    pid,
    startTime: '1000',
    uids: [0, 0, 0, 0] as [number, number, number, number],
    gid: 0,
  });
  const r = checkJob(cp.sign(payload()), ctx({ readTarget: root, userName: () => 'root' }));
  assert.equal(!r.ok && r.code, 'POLICY_ROOT_TARGET');
  assert.match(!r.ok ? r.message : '', /policy\.allowRoot/);
  assert.equal(
    checkJob(cp.sign(payload()), ctx({ readTarget: root, policy: PolicyConfig.parse({ allowRoot: true }) }))
      .ok,
    true,
  );
});

test('only allowed users may be targeted, by name or uid', () => {
  const policy = PolicyConfig.parse({ allowedUsers: ['www-data', 2000] });
  const r = checkJob(cp.sign(payload()), ctx({ policy }));
  assert.equal(!r.ok && r.code, 'POLICY_USER_NOT_ALLOWED');
  assert.equal(checkJob(cp.sign(payload()), ctx({ policy, userName: () => 'www-data' })).ok, true);
  assert.equal(
    checkJob(
      cp.sign(payload()),
      ctx({
        policy,
        readTarget: (pid) => ({ pid, startTime: '1000', uids: [2000, 2000, 2000, 2000], gid: 0 }),
      }),
    ).ok,
    true,
  );
});

test('code over maxCodeBytes is refused', () => {
  const code = 'x = 1\n'.repeat(100);
  const r = checkJob(
    cp.sign(payload({ code, codeHash: codeHash(code) })),
    ctx({ policy: PolicyConfig.parse({ maxCodeBytes: 100 }) }),
  );
  assert.equal(!r.ok && r.code, 'POLICY_CODE_TOO_LARGE');
});

test('with custom code off only unmodified library scripts of this agent pass', () => {
  const policy = PolicyConfig.parse({ allowCustomCode: false });
  const custom = checkJob(cp.sign(payload()), ctx({ policy }));
  assert.equal(!custom.ok && custom.code, 'POLICY_CUSTOM_CODE');
  const s = getScript('gc.stats')!;
  assert.ok(s, 'library has gc.stats');
  const lib = payload({
    kind: 'library',
    scriptId: s.id,
    code: s.source,
    codeHash: codeHash(s.source),
    params: {},
  });
  assert.equal(checkJob(cp.sign(lib), ctx({ policy })).ok, true);
  const altered = s.source + '\nimport os; os.system("id")\n';
  const bad = checkJob(cp.sign({ ...lib, code: altered, codeHash: codeHash(altered) }), ctx({ policy }));
  assert.equal(!bad.ok && bad.code, 'POLICY_CUSTOM_CODE');
  assert.match(!bad.ok ? bad.message : '', /differs from this agent's library copy/);
});
