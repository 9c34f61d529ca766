import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, renameSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ensureKeyPair, IdentityError, loadIdentity, prepareStateDir, saveIdentity } from '../src/identity';
import { keyIdOf } from '@pyreach/protocol/job';
import { signer, tempDir } from './helpers';

const root = process.getuid?.() === 0;
const NOBODY = 65534;

/** An enrolled state directory, as `enroll` leaves it. */
function enrolled(): string {
  const dir = join(tempDir(), 'state');
  prepareStateDir(dir);
  ensureKeyPair(dir);
  const cp = signer();
  saveIdentity(dir, {
    agentId: 'agent_1',
    server: 'http://127.0.0.1:1',
    signingPublicKey: cp.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    signingKeyId: keyIdOf(cp.publicKey),
    enrolledAt: new Date().toISOString(),
    hostname: 'h',
    labels: {},
  });
  return dir;
}

const refused = (dir: string, re: RegExp) =>
  assert.throws(
    () => loadIdentity(dir),
    (e: unknown) => e instanceof IdentityError && re.test(e.message),
  );

describe('the agent refuses state that someone else could have written', () => {
  test('an enrolled state directory as enrol leaves it loads', () => {
    assert.equal(loadIdentity(enrolled()).agentId, 'agent_1');
  });

  test('a group- or other-writable state directory, naming the chmod', () => {
    const dir = enrolled();
    chmodSync(dir, 0o770);
    refused(
      dir,
      new RegExp(`state directory ${dir} is writable by group or others \\(mode 0770\\).*chmod 700 ${dir}`),
    );
  });

  test('identity.json that group or others may write (it pins the control plane key)', () => {
    const dir = enrolled();
    chmodSync(join(dir, 'identity.json'), 0o666);
    refused(dir, /identity file .*identity\.json is writable by group or others \(mode 0666\).*chmod 600/);
  });

  test('a private key readable by others, as before', () => {
    const dir = enrolled();
    chmodSync(join(dir, 'agent.key'), 0o640);
    refused(dir, /private key file .*agent\.key has mode 0640.*chmod 600/);
  });

  test('identity.json replaced by a link (planted before the agent wrote it)', () => {
    const dir = enrolled();
    const elsewhere = join(tempDir(), 'identity.json');
    renameSync(join(dir, 'identity.json'), elsewhere);
    symlinkSync(elsewhere, join(dir, 'identity.json'));
    refused(dir, /identity file .*identity\.json is a symbolic link/);
  });

  test('a state directory that is a link, and one below a directory anybody can write', () => {
    const dir = enrolled();
    const link = join(tempDir(), 'state-link');
    symlinkSync(dir, link);
    refused(link, /the state directory .*state-link is a symbolic link/);
    assert.throws(() => prepareStateDir(link), /is a symbolic link/, 'enrol never chmods through a link');

    const open = mkdtempSync(join(tmpdir(), 'pyreach-open-'));
    chmodSync(open, 0o777); // world-writable, not sticky: anyone may rename the state directory away
    const inner = join(open, 'state');
    assert.throws(
      () => prepareStateDir(inner),
      (e: unknown) =>
        e instanceof IdentityError &&
        e.message.includes(`${open} (a parent of the state directory ${inner}) is writable`) &&
        e.message.includes(`chmod go-w ${open}`),
    );
    chmodSync(open, 0o1777); // sticky, like /tmp: others cannot replace what is not theirs
    prepareStateDir(inner);
  });

  test(
    'a state directory or identity.json owned by another user (uid 65534), naming the chown',
    { skip: root ? false : 'needs root to give files to another uid' },
    () => {
      const dir = enrolled();
      chownSync(join(dir, 'identity.json'), NOBODY, NOBODY);
      refused(dir, /identity\.json is owned by uid 65534, not by the agent's uid 0.*chown 0 /);
      chownSync(join(dir, 'identity.json'), 0, 0);
      chownSync(dir, NOBODY, NOBODY);
      refused(dir, new RegExp(`state directory ${dir} is owned by uid 65534.*chown -R 0 ${dir}`));
      const theirs = join(tempDir(), 'theirs');
      mkdirSync(theirs);
      chownSync(theirs, NOBODY, NOBODY);
      assert.throws(() => prepareStateDir(join(theirs, 'state')), /owned by uid 65534.*chown root/);
    },
  );
});
