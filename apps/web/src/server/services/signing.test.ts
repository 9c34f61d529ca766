import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { signJob, verifyJob } from '@pyreach/protocol/job';
import { loadOrCreateSigningKey } from './signing';

const dir = await mkdtemp(path.join(tmpdir(), 'pyreach-key-'));
after(() => rm(dir, { recursive: true, force: true }));

test('the signing key is created on first start with mode 0600 in a 0700 directory and reused afterwards', async () => {
  const keyFile = path.join(dir, 'keys', 'signing.pem');
  const first = await loadOrCreateSigningKey({ keyFile });
  assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
  assert.equal((await stat(path.dirname(keyFile))).mode & 0o777, 0o700);
  const second = await loadOrCreateSigningKey({ keyFile });
  assert.equal(second.keyId, first.keyId);
  assert.match(first.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
  const env = signJob(
    {
      v: 1,
      jobId: 'j1',
      agentId: 'a1',
      requestId: 'r1',
      target: { pid: 1, startTime: '1' },
      kind: 'custom',
      scriptId: null,
      code: 'x',
      codeHash: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881',
      params: {},
      options: { inline: false, budgetSeconds: 1, pickupTimeoutSeconds: 1, backend: 'native' },
      issuedAt: 'now',
      notAfter: 'later',
    },
    second.privateKey,
    second.publicKey,
  );
  assert.equal(verifyJob(env, first.publicKey).ok, true);
});

test('a signing key readable by group or others stops the start with the fix to apply', async () => {
  const keyFile = path.join(dir, 'loose.pem');
  await loadOrCreateSigningKey({ keyFile });
  await chmod(keyFile, 0o644);
  await assert.rejects(loadOrCreateSigningKey({ keyFile }), /accessible by group or others.*chmod 600/);
});

test('two replicas starting together end up with the same key', async () => {
  const keyFile = path.join(dir, 'race', 'signing.pem');
  const [a, b] = await Promise.all([
    loadOrCreateSigningKey({ keyFile }),
    loadOrCreateSigningKey({ keyFile }),
  ]);
  assert.equal(a.keyId, b.keyId);
});

test('an upgrade command loads the control plane’s key and never mints one (create: false)', async () => {
  const keyFile = path.join(dir, 'upgrade', 'attestation.pem');
  await assert.rejects(
    loadOrCreateSigningKey({ keyFile, create: false }),
    /does not exist: run this with the control plane's environment/,
  );
  await assert.rejects(stat(path.dirname(keyFile)), { code: 'ENOENT' }, 'nothing created');
  const made = await loadOrCreateSigningKey({ keyFile });
  assert.equal((await loadOrCreateSigningKey({ keyFile, create: false })).keyId, made.keyId);
});
