import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { canonicalJson } from './canonical';
import { JobEvent } from './agent';
import { canTransition } from './exec';
import { codeHash, signJob, verifyJob, type JobPayload } from './job';

const keys = () => generateKeyPairSync('ed25519');

function payload(overrides: Partial<JobPayload> = {}): JobPayload {
  const code = 'print("hi")';
  return {
    v: 1,
    jobId: 'job_1',
    agentId: 'agt_1',
    requestId: 'req_1',
    target: { pid: 42, startTime: '1234' },
    kind: 'custom',
    scriptId: null,
    code,
    codeHash: codeHash(code),
    params: { level: 'DEBUG' },
    options: { inline: false, budgetSeconds: 30, pickupTimeoutSeconds: 10, backend: 'native' },
    issuedAt: '2026-01-01T00:00:00.000Z',
    notAfter: '2026-01-01T00:05:00.000Z',
    ...overrides,
  };
}

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [1, { z: 1, y: undefined }], c: 'x' } }),
      '{"a":{"c":"x","d":[1,{"z":1}]},"b":1}',
    );
  });
  it('refuses values that are not JSON', () => {
    assert.throws(() => canonicalJson({ n: Number.NaN }), /non-finite/);
    assert.throws(() => canonicalJson({ n: 1n }), /bigint/);
  });
});

describe('job envelopes', () => {
  it('verifies a job signed with the pinned key', () => {
    const { privateKey, publicKey } = keys();
    const env = signJob(payload(), privateKey, publicKey);
    const check = verifyJob(env, publicKey);
    assert.equal(check.ok, true);
  });

  it('refuses a job whose parameters were changed after signing', () => {
    const { privateKey, publicKey } = keys();
    const env = signJob(payload(), privateKey, publicKey);
    const forged = { ...env, payload: { ...env.payload, params: { level: 'INFO' } } };
    const check = verifyJob(forged, publicKey);
    assert.deepEqual(check.ok ? null : check.code, 'BAD_SIGNATURE');
  });

  it('refuses a job signed by another key', () => {
    const a = keys();
    const b = keys();
    const env = signJob(payload(), a.privateKey, a.publicKey);
    const check = verifyJob(env, b.publicKey);
    assert.equal(check.ok ? null : check.code, 'UNKNOWN_KEY');
    const disguised = { ...signJob(payload(), a.privateKey, b.publicKey) };
    const check2 = verifyJob(disguised, b.publicKey);
    assert.equal(check2.ok ? null : check2.code, 'BAD_SIGNATURE');
  });

  it('refuses code that does not match its signed hash', () => {
    const { privateKey, publicKey } = keys();
    const env = signJob(payload({ codeHash: codeHash('other') }), privateKey, publicKey);
    const check = verifyJob(env, publicKey);
    assert.equal(check.ok ? null : check.code, 'CODE_HASH_MISMATCH');
  });

  it('refuses a malformed envelope with a message naming the field', () => {
    const check = verifyJob({ payload: { v: 1 }, signature: 'x', keyId: 'y' }, keys().publicKey);
    assert.equal(check.ok, false);
    assert.match(check.ok ? '' : check.message, /jobId/);
  });
});

describe('job events', () => {
  it('rejects an output chunk over the size limit', () => {
    const r = JobEvent.safeParse({
      type: 'output',
      jobId: 'j',
      seq: 1,
      at: new Date().toISOString(),
      chunk: 'x'.repeat(300 * 1024),
    });
    assert.equal(r.success, false);
  });
});

describe('execution state machine', () => {
  it('never leaves a terminal state except agent_lost, which the real outcome may still replace', () => {
    assert.equal(canTransition('succeeded', 'failed'), false);
    assert.equal(canTransition('agent_lost', 'succeeded'), true);
    assert.equal(canTransition('queued', 'succeeded'), false);
  });
});
