import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { keyIdOf } from '@pyreach/protocol/job';
import type { Db } from '@pyreach/db';

/** The control plane's job-signing key. */
export interface SigningKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SHA-256 hex of the SPKI DER (what envelopes carry as keyId). */
  keyId: string;
  /** SPKI PEM handed to agents at enrolment (they pin it). */
  publicKeyPem: string;
}

/**
 * Loads the Ed25519 private key from `keyFile`, creating it on first start (PKCS#8 PEM, mode 0600, in a
 * directory created with mode 0700; creation is atomic, so two replicas racing end up with one key).
 * Refuses to start when the file is readable or writable by group or others, or is not an Ed25519 key.
 * With `db`, registers the public half in `signing_key` (idempotent).
 */
export async function loadOrCreateSigningKey(opts: {
  keyFile: string;
  db?: Db;
  /** false: the key must exist already (a command acting for a running control plane must not mint its own). */
  create?: boolean;
}): Promise<SigningKeyPair> {
  const { keyFile } = opts;
  if (opts.create === false) return loadKey(keyFile, opts.db);
  await mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  // Written to a private temp file first, then hard-linked into place: link() fails if the name exists, so
  // a replica starting at the same moment never reads a half-written key, and the first writer wins.
  const tmp = `${keyFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const { privateKey: fresh } = generateKeyPairSync('ed25519');
  await writeFile(tmp, fresh.export({ type: 'pkcs8', format: 'pem' }).toString(), {
    mode: 0o600,
    flag: 'wx',
  });
  try {
    await link(tmp, keyFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp);
  }
  return loadKey(keyFile, opts.db);
}

async function loadKey(keyFile: string, db: Db | undefined): Promise<SigningKeyPair> {
  const st = await stat(keyFile).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
    throw new Error(
      `key file ${keyFile} does not exist: run this with the control plane's environment (its PYREACH_DATA_DIR or the key file variable)`,
    );
  });
  if ((st.mode & 0o077) !== 0) {
    throw new Error(
      `signing key ${keyFile} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${keyFile}`,
    );
  }
  const pem = await readFile(keyFile, 'utf8');
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new Error(`signing key ${keyFile} is not an Ed25519 key`);
  const publicKey = createPublicKey(privateKey);
  const keyId = keyIdOf(publicKey);
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  if (db) {
    await db.signingKey.upsert({
      where: { id: keyId },
      create: { id: keyId, publicKey: publicKeyPem },
      update: {},
    });
  }
  return { privateKey, publicKey, keyId, publicKeyPem };
}
