import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { Base64, Id, JsonObject, MAX_CODE_BYTES, PROTOCOL_VERSION, Sha256Hex } from './common';
import { canonicalJson, sha256Hex } from './canonical';
import { JobOptions, JobTarget } from './options';

// Browser-safe parts (the request form and API shapes use them) live in options.ts.
export { JobOptions, JobTarget } from './options';

/** What the control plane signs. Every field the agent acts on is inside the signature. */
export const JobPayload = z.object({
  v: z.literal(PROTOCOL_VERSION),
  jobId: Id,
  agentId: Id,
  requestId: Id,
  target: JobTarget,
  kind: z.enum(['library', 'custom']),
  /** Library script id (e.g. `logging.set_level`) when kind = library. */
  scriptId: z.string().max(128).nullable(),
  code: z.string().max(MAX_CODE_BYTES),
  codeHash: Sha256Hex,
  params: JsonObject,
  options: JobOptions,
  issuedAt: z.string(),
  notAfter: z.string(),
});
export type JobPayload = z.infer<typeof JobPayload>;

export const JobEnvelope = z.object({
  payload: JobPayload,
  /** Ed25519 signature (base64) over the canonical JSON of `payload`, prefixed by the domain tag. */
  signature: Base64,
  /** SHA-256 of the signing public key (SPKI DER), so keys can rotate. */
  keyId: Sha256Hex,
});
export type JobEnvelope = z.infer<typeof JobEnvelope>;

const JOB_DOMAIN = 'pyreach-job-v1\n';
const AUTH_DOMAIN = 'pyreach-agent-auth-v1\n';

export function codeHash(code: string): string {
  return sha256Hex(code);
}

export function keyIdOf(publicKey: KeyObject): string {
  return sha256Hex(publicKey.export({ type: 'spki', format: 'der' }));
}

export function publicKeyFromPem(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError('expected an Ed25519 public key');
  return key;
}

export function privateKeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError('expected an Ed25519 private key');
  return key;
}

export function signJob(payload: JobPayload, privateKey: KeyObject, publicKey: KeyObject): JobEnvelope {
  const bytes = Buffer.from(JOB_DOMAIN + canonicalJson(payload), 'utf8');
  return {
    payload,
    signature: sign(null, bytes, privateKey).toString('base64'),
    keyId: keyIdOf(publicKey),
  };
}

export type JobCheck =
  | { ok: true; payload: JobPayload }
  | {
      ok: false;
      code: 'MALFORMED' | 'BAD_SIGNATURE' | 'UNKNOWN_KEY' | 'CODE_HASH_MISMATCH';
      message: string;
    };

/** Verifies schema, key id, signature and that the code matches its hash. Expiry/replay are the caller's. */
export function verifyJob(input: unknown, publicKey: KeyObject): JobCheck {
  const parsed = JobEnvelope.safeParse(input);
  if (!parsed.success) {
    return {
      ok: false,
      code: 'MALFORMED',
      message: `job envelope is malformed: ${z.prettifyError(parsed.error)}`,
    };
  }
  const env = parsed.data;
  if (env.keyId !== keyIdOf(publicKey)) {
    return { ok: false, code: 'UNKNOWN_KEY', message: 'job was signed with a key this agent does not trust' };
  }
  const bytes = Buffer.from(JOB_DOMAIN + canonicalJson(env.payload), 'utf8');
  if (!verify(null, bytes, publicKey, Buffer.from(env.signature, 'base64'))) {
    return {
      ok: false,
      code: 'BAD_SIGNATURE',
      message: 'job signature does not verify against the pinned control-plane key',
    };
  }
  if (codeHash(env.payload.code) !== env.payload.codeHash) {
    return { ok: false, code: 'CODE_HASH_MISMATCH', message: 'job code does not match its signed hash' };
  }
  return { ok: true, payload: env.payload };
}

/** Bytes an agent signs to answer a connection challenge. */
export function agentAuthMessage(agentId: string, nonce: string): Buffer {
  return Buffer.from(AUTH_DOMAIN + canonicalJson({ agentId, nonce }), 'utf8');
}
