/**
 * The agent's identity in its state directory: its Ed25519 key pair (private key mode 0600, directory 0700)
 * and what enrolment returned — its id and the control plane's pinned job-signing key.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { agentAuthMessage, keyIdOf, privateKeyFromPem, publicKeyFromPem } from '@pyreach/protocol/job';
import { ensureDir, writeFileDurable } from './durable';
import { agentUid, checkParents, checkState, checkStateDirItself, StateDirError } from './statedir';

export const IDENTITY_FILE = 'identity.json';
export const PRIVATE_KEY_FILE = 'agent.key';
export const PUBLIC_KEY_FILE = 'agent.pub';

export const Identity = z.object({
  agentId: z.string().min(1),
  server: z.string().min(1),
  signingPublicKey: z.string().min(1),
  signingKeyId: z.string().regex(/^[0-9a-f]{64}$/),
  enrolledAt: z.string(),
  hostname: z.string(),
  labels: z.record(z.string(), z.string()),
});
export type Identity = z.infer<typeof Identity>;

export interface LoadedIdentity extends Identity {
  privateKey: KeyObject;
  publicKeyPem: string;
  pinnedKey: KeyObject;
}

export class IdentityError extends Error {
  override name = 'IdentityError';
}

function guarded<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof StateDirError) throw new IdentityError(e.message);
    throw e;
  }
}

/** Make (or re-use) the state directory: checked before anything is written or chmod'ed there. */
export function prepareStateDir(stateDir: string): void {
  guarded(() => {
    checkParents(stateDir, agentUid());
    checkStateDirItself(stateDir, agentUid());
  });
  ensureDir(stateDir, 0o700);
  checkStateOwnership(stateDir); // files an earlier enrolment left are read and kept: they must be ours
}

/** The state directory and the identity files are the agent's alone (see statedir.ts). */
export function checkStateOwnership(stateDir: string): void {
  guarded(() =>
    checkState(stateDir, {
      identity: IDENTITY_FILE,
      privateKey: PRIVATE_KEY_FILE,
      publicKey: PUBLIC_KEY_FILE,
    }),
  );
}

/** Generate the key pair (once); an existing key is kept so re-enrolling does not orphan a running agent. */
export function ensureKeyPair(stateDir: string): {
  privateKey: KeyObject;
  publicKeyPem: string;
  created: boolean;
} {
  const keyPath = join(stateDir, PRIVATE_KEY_FILE);
  if (existsSync(keyPath)) {
    const privateKey = privateKeyFromPem(readFileSync(keyPath, 'utf8'));
    return {
      privateKey,
      publicKeyPem: readFileSync(join(stateDir, PUBLIC_KEY_FILE), 'utf8'),
      created: false,
    };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  writeFileDurable(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  writeFileDurable(join(stateDir, PUBLIC_KEY_FILE), publicKeyPem, 0o644);
  return { privateKey, publicKeyPem, created: true };
}

export function saveIdentity(stateDir: string, identity: Identity): void {
  writeFileDurable(join(stateDir, IDENTITY_FILE), JSON.stringify(identity, null, 2) + '\n', 0o600);
}

export function readIdentity(stateDir: string): Identity | null {
  const path = join(stateDir, IDENTITY_FILE);
  if (!existsSync(path)) return null;
  const parsed = Identity.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success)
    throw new IdentityError(`${path} is damaged: ${z.prettifyError(parsed.error)}; enrol again`);
  return parsed.data;
}

export function loadIdentity(stateDir: string): LoadedIdentity {
  checkStateOwnership(stateDir);
  const id = readIdentity(stateDir);
  if (!id)
    throw new IdentityError(
      `this host is not enrolled (no ${join(stateDir, IDENTITY_FILE)}): run "pyreach-agent enroll --server URL --token TOKEN" first`,
    );
  const keyPath = join(stateDir, PRIVATE_KEY_FILE);
  if (!existsSync(keyPath)) throw new IdentityError(`private key ${keyPath} is missing; enrol again`);
  const privateKey = privateKeyFromPem(readFileSync(keyPath, 'utf8'));
  const pinnedKey = publicKeyFromPem(id.signingPublicKey);
  if (keyIdOf(pinnedKey) !== id.signingKeyId)
    throw new IdentityError(`pinned signing key does not match its key id in ${IDENTITY_FILE}; enrol again`);
  return {
    ...id,
    privateKey,
    publicKeyPem: readFileSync(join(stateDir, PUBLIC_KEY_FILE), 'utf8'),
    pinnedKey,
  };
}

export function signChallenge(
  identity: Pick<LoadedIdentity, 'agentId' | 'privateKey'>,
  nonce: string,
): string {
  return sign(null, agentAuthMessage(identity.agentId, nonce), identity.privateKey).toString('base64');
}
