import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sign } from 'node:crypto';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { codeHash, keyIdOf, signJob, toV1 } from '@pyreach/protocol/job';
import { getScript } from '@pyreach/scripts';
import { checkJob, untrustedJobId, type CheckContext } from '../src/checks';
import { PolicyConfig } from '../src/config';
import { inspectPayload, payload, payloadV2, signer } from './helpers';

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

// ---- protocol v2 ---------------------------------------------------------------------------------------

/** Any text, signed with the pinned key: what a control plane newer than this agent could send. */
function signedText(text: string) {
  return {
    v: 2,
    payload: text,
    signature: sign(null, Buffer.from('pyreach-job-v2\n' + text, 'utf8'), cp.privateKey).toString('base64'),
    keyId: keyIdOf(cp.publicKey),
  };
}

const rootTarget = (pid: number) => ({
  pid,
  startTime: '1000',
  uids: [0, 0, 0, 0] as [number, number, number, number],
  gid: 0,
});

test('a v2 envelope passes the same checks and comes back in the v2 shape with its approvals', () => {
  const p = payloadV2({ options: { ...payloadV2().options, thread: { tid: 77 } } });
  const r = checkJob(cp.signV2(p), ctx());
  assert.ok(r.ok);
  assert.equal(r.version, 2);
  assert.deepEqual(r.payload, p);
});

test('a v1 envelope is seen in the v2 shape: its tid becomes options.thread, with no approvals', () => {
  const r = checkJob(cp.sign(payload({ target: { pid: 4242, startTime: '1000', tid: 9 } })), ctx());
  assert.ok(r.ok && r.payload.action === 'exec');
  assert.equal(r.version, 1);
  assert.deepEqual(r.payload.action === 'exec' && r.payload.options.thread, { tid: 9 });
  assert.deepEqual(r.payload.approvals, []);
});

test('a v2 job carrying a field this agent does not know is refused, saying to upgrade, never run without it', () => {
  const text = canonicalJson({ ...payloadV2(), sandbox: false });
  const r = checkJob(signedText(text), ctx());
  assert.equal(!r.ok && r.code, 'MALFORMED');
  assert.match(!r.ok ? r.message : '', /sandbox.*upgrade the agent/);
  assert.equal(!r.ok && r.trusted, false, 'no payload parsed: answered in the ack only');
});

test('an envelope version this agent does not speak is refused UNSUPPORTED_VERSION, saying to upgrade', () => {
  const r = checkJob({ ...cp.signV2(payloadV2()), v: 3 }, ctx());
  assert.equal(!r.ok && r.code, 'UNSUPPORTED_VERSION');
  assert.match(!r.ok ? r.message : '', /upgrade the agent/);
});

test('replayed, expired, misaddressed and pid-reused v2 jobs are refused like v1 ones, for exec and inspect', () => {
  for (const make of [payloadV2, inspectPayload] as const) {
    const p = make();
    assert.equal(checkJob(cp.signV2(p), ctx()).ok, true, `${p.action} passes`);
    const replay = checkJob(cp.signV2(p), ctx({ seen: (id) => id === p.jobId }));
    assert.equal(!replay.ok && replay.code, 'REPLAYED');
    const expired = checkJob(
      cp.signV2(make({ notAfter: new Date(Date.now() - 60_000).toISOString() })),
      ctx(),
    );
    assert.equal(!expired.ok && expired.code, 'EXPIRED');
    assert.equal(!expired.ok && expired.trusted, true);
    const other = checkJob(cp.signV2(make({ agentId: 'agent_2' })), ctx());
    assert.equal(!other.ok && other.code, 'WRONG_AGENT');
    const reused = checkJob(
      cp.signV2(make()),
      ctx({ readTarget: (pid) => ({ pid, startTime: '2000', uids: [1001, 1001, 1001, 1001], gid: 0 }) }),
    );
    assert.equal(!reused.ok && reused.code, 'TARGET_CHANGED');
  }
});

test('a v2 job asking to wake is refused POLICY_WAKE unless the local policy allows wake, never run without it', () => {
  const job = cp.signV2(payloadV2({ options: { ...payloadV2().options, wake: true } }));
  const r = checkJob(job, ctx());
  assert.equal(!r.ok && r.code, 'POLICY_WAKE');
  assert.match(!r.ok ? r.message : '', /policy.*allowWake/);
  assert.equal(!r.ok && r.trusted, true, 'a durable refusal reaches the control plane');
  const allowed = checkJob(job, ctx({ policy: PolicyConfig.parse({ allowRoot: true, allowWake: true }) }));
  assert.equal(allowed.ok, true, JSON.stringify(allowed));
});

test("an inspection is not bound by exec's code rules, but by the users and root rules (its own or exec's)", () => {
  // Custom code off and a tiny code limit do not concern a job that carries no code.
  const noCode = PolicyConfig.parse({ allowCustomCode: false, maxCodeBytes: 1 });
  assert.equal(checkJob(cp.signV2(inspectPayload()), ctx({ policy: noCode })).ok, true);
  // Root: exec's allowRoot by default, policy.inspect.allowRoot when set.
  const root = ctx({ readTarget: rootTarget, userName: () => 'root' });
  const refused = checkJob(cp.signV2(inspectPayload()), root);
  assert.equal(!refused.ok && refused.code, 'POLICY_ROOT_TARGET');
  assert.match(!refused.ok ? refused.message : '', /policy\.allowRoot \(policy\.inspect\.allowRoot unset\)/);
  const inspectRoot = PolicyConfig.parse({ inspect: { allowRoot: true } });
  assert.equal(checkJob(cp.signV2(inspectPayload()), { ...root, policy: inspectRoot }).ok, true);
  assert.equal(
    checkJob(cp.signV2(payloadV2()), { ...root, policy: inspectRoot }).ok,
    false,
    'exec stays refused',
  );
  // Users: exec's list by default, the inspect list when set (it can be wider or narrower).
  const narrow = PolicyConfig.parse({ allowedUsers: ['*'], inspect: { allowedUsers: ['www-data'] } });
  const u = checkJob(cp.signV2(inspectPayload()), ctx({ policy: narrow }));
  assert.equal(!u.ok && u.code, 'POLICY_USER_NOT_ALLOWED');
  assert.match(!u.ok ? u.message : '', /may not be inspected.*policy\.inspect\.allowedUsers/);
  assert.equal(checkJob(cp.signV2(payloadV2()), ctx({ policy: narrow })).ok, true);
  const wide = PolicyConfig.parse({ allowedUsers: ['www-data'], inspect: { allowedUsers: ['*'] } });
  assert.equal(checkJob(cp.signV2(inspectPayload()), ctx({ policy: wide })).ok, true);
  assert.equal(checkJob(cp.signV2(payloadV2()), ctx({ policy: wide })).ok, false);
});

test('an inspection of a process known to have opted out is refused POLICY_OPTED_OUT, saying how to allow it', () => {
  const optedOut = ctx({ remoteDebugEnabled: () => false });
  const r = checkJob(cp.signV2(inspectPayload()), optedOut);
  assert.equal(!r.ok && r.code, 'POLICY_OPTED_OUT');
  assert.match(!r.ok ? r.message : '', /opted out.*"allowOptedOut": true/);
  assert.equal(!r.ok && r.trusted, true);
  const allowed = { ...optedOut, policy: PolicyConfig.parse({ inspect: { allowOptedOut: true } }) };
  assert.equal(checkJob(cp.signV2(inspectPayload()), allowed).ok, true);
  // Not known yet (not in the inventory): the reading child decides from the target's memory.
  assert.equal(checkJob(cp.signV2(inspectPayload()), ctx({ remoteDebugEnabled: () => null })).ok, true);
  // Exec jobs are the engine's business here (it refuses REMOTE_DEBUG_DISABLED itself).
  assert.equal(checkJob(cp.signV2(payloadV2()), optedOut).ok, true);
});

test('a v1 job made from a v2 one by the control plane (toV1) passes as the same job', () => {
  const v1 = toV1(payloadV2({ options: { ...payloadV2().options, thread: 'auto' } }));
  assert.ok(v1.ok);
  const r = checkJob(cp.sign(v1.payload), ctx());
  assert.ok(r.ok && r.payload.action === 'exec');
  assert.equal(r.payload.action === 'exec' && r.payload.options.thread, 'main');
});

test('the job id of a v2 envelope that did not verify is read for the local audit only', () => {
  const env = cp.signV2(payloadV2({ jobId: 'job_abc' }));
  assert.equal(untrustedJobId(env), 'job_abc');
  assert.equal(untrustedJobId({ v: 2, payload: '{"jobId":"../../x"}' }), null);
  assert.equal(untrustedJobId({ v: 2, payload: 'not json' }), null);
});
