import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { canonicalJson } from './canonical';
import {
  codeHash,
  fromV1,
  keyIdOf,
  signJob,
  signJobV2,
  toV1,
  verifyAnyJob,
  type ExecPayloadV2,
  type JobPayloadV2,
} from './job';

const keys = () => generateKeyPairSync('ed25519');
const code = 'print("hi")';

function exec(overrides: Partial<ExecPayloadV2> = {}): ExecPayloadV2 {
  return {
    v: 2,
    jobId: 'job_1',
    agentId: 'agt_1',
    requestId: 'req_1',
    target: { pid: 42, startTime: '1234' },
    contentHash: 'a'.repeat(64),
    approvals: ['att_1', 'att_2'],
    breakGlass: false,
    issuedAt: '2026-01-01T00:00:00.000Z',
    notAfter: '2026-01-01T00:05:00.000Z',
    action: 'exec',
    kind: 'custom',
    scriptId: null,
    code,
    codeHash: codeHash(code),
    params: { level: 'DEBUG' },
    options: {
      inline: false,
      budgetSeconds: 30,
      pickupTimeoutSeconds: 10,
      backend: 'native',
      thread: 'auto',
      wake: false,
    },
    ...overrides,
  };
}

/** What a signer that made a mistake (or an attacker holding the key) could produce: any bytes, signed. */
function signText(text: string, k: ReturnType<typeof keys>) {
  return {
    v: 2,
    payload: text,
    signature: sign(null, Buffer.from('pyreach-job-v2\n' + text, 'utf8'), k.privateKey).toString('base64'),
    keyId: keyIdOf(k.publicKey),
  };
}

describe('job envelope v2 (exact signed bytes)', () => {
  it('verifies what was signed and returns the payload as signed', () => {
    const k = keys();
    const check = verifyAnyJob(signJobV2(exec(), k.privateKey, k.publicKey), k.publicKey);
    assert.ok(check.ok, check.ok ? '' : check.message);
    assert.equal(check.version, 2);
    assert.deepEqual(check.payload, exec());
  });

  it('refuses any change to the signed bytes, even one that parses to the same value', () => {
    const k = keys();
    const env = signJobV2(exec(), k.privateKey, k.publicKey);
    const spaced = { ...env, payload: env.payload.replace('"action":', '"action": ') };
    assert.equal(
      verifyAnyJob(spaced, k.publicKey).ok ? '' : (verifyAnyJob(spaced, k.publicKey) as any).code,
      'BAD_SIGNATURE',
    );
    const edited = { ...env, payload: env.payload.replace('"budgetSeconds":30', '"budgetSeconds":3600') };
    assert.equal((verifyAnyJob(edited, k.publicKey) as any).code, 'BAD_SIGNATURE');
  });

  it('refuses signed bytes with a duplicate key (two readers could see two jobs)', () => {
    const k = keys();
    const text = canonicalJson(exec()).replace(
      '"code":"print(\\"hi\\")"',
      '"code":"print(\\"hi\\")","code":"x"',
    );
    const check = verifyAnyJob(signText(text, k), k.publicKey);
    assert.equal(check.ok ? '' : check.code, 'MALFORMED');
    assert.match(check.ok ? '' : check.message, /canonical/);
  });

  it('refuses a signed field it does not understand, saying to upgrade, instead of ignoring it', () => {
    const k = keys();
    const text = canonicalJson({ ...exec(), runAsRoot: true });
    const check = verifyAnyJob(signText(text, k), k.publicKey);
    assert.equal(check.ok ? '' : check.code, 'MALFORMED');
    assert.match(check.ok ? '' : check.message, /runAsRoot.*upgrade the agent/);
    const nested = canonicalJson({ ...exec(), options: { ...exec().options, sandbox: false } });
    assert.match((verifyAnyJob(signText(nested, k), k.publicKey) as any).message, /options\.sandbox/);
  });

  it('refuses an envelope version it does not speak, and a key it does not trust', () => {
    const k = keys();
    const env = signJobV2(exec(), k.privateKey, k.publicKey);
    const v3 = verifyAnyJob({ ...env, v: 3 }, k.publicKey);
    assert.equal(v3.ok ? '' : v3.code, 'UNSUPPORTED_VERSION');
    assert.match(v3.ok ? '' : v3.message, /upgrade the agent/);
    assert.equal((verifyAnyJob(env, keys().publicKey) as any).code, 'UNKNOWN_KEY');
  });

  it('refuses code that does not match its signed hash', () => {
    const k = keys();
    const env = signJobV2(exec({ codeHash: codeHash('other') }), k.privateKey, k.publicKey);
    assert.equal((verifyAnyJob(env, k.publicKey) as any).code, 'CODE_HASH_MISMATCH');
  });

  it('counts the code limit in bytes, not characters', () => {
    const k = keys();
    const big = 'é'.repeat(200 * 1024); // 200 Ki characters, 400 KiB of UTF-8
    assert.throws(
      () => signJobV2(exec({ code: big, codeHash: codeHash(big) }), k.privateKey, k.publicKey),
      /bytes/,
    );
  });

  it('carries inspection jobs, which have no code', () => {
    const k = keys();
    const { kind: _k, scriptId: _s, code: _c, codeHash: _h, params: _p, options: _o, ...base } = exec();
    const inspect: JobPayloadV2 = { ...base, action: 'inspect', what: 'stacks' };
    const check = verifyAnyJob(signJobV2(inspect, k.privateKey, k.publicKey), k.publicKey);
    assert.ok(check.ok);
    assert.equal(check.payload.action, 'inspect');
  });
});

describe('agents one version behind', () => {
  it('still verify v1 envelopes, seen in the v2 shape', () => {
    const k = keys();
    const v1 = toV1(exec({ options: { ...exec().options, thread: { tid: 77 } } }));
    assert.ok(v1.ok);
    const check = verifyAnyJob(signJob(v1.payload, k.privateKey, k.publicKey), k.publicKey);
    assert.ok(check.ok);
    assert.equal(check.version, 1);
    assert.deepEqual(check.ok && check.payload.action === 'exec' ? check.payload.options.thread : null, {
      tid: 77,
    });
    assert.deepEqual(fromV1(v1.payload).options, { ...exec().options, thread: { tid: 77 } });
  });

  it('get a v1 job only where v1 can say the same: auto narrows to main; wake and inspect need v2', () => {
    const auto = toV1(exec());
    assert.ok(auto.ok);
    assert.equal(auto.ok && auto.payload.target.tid, undefined);
    const wake = toV1(exec({ options: { ...exec().options, wake: true } }));
    assert.equal(wake.ok, false);
    assert.match(wake.ok ? '' : wake.message, /protocol v2/);
  });
});
