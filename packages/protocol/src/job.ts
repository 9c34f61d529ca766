import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { Base64, Id, JsonObject, MAX_CODE_BYTES, PROTOCOL_VERSION, Sha256Hex, boundedText } from './common';
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

const keyIds = new WeakMap<KeyObject, string>();

/** The key's id (SHA-256 of its SPKI DER), computed once per key object: every signed and verified job asks. */
export function keyIdOf(publicKey: KeyObject): string {
  let id = keyIds.get(publicKey);
  if (id === undefined) {
    id = sha256Hex(publicKey.export({ type: 'spki', format: 'der' }));
    keyIds.set(publicKey, id);
  }
  return id;
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

// ---- protocol v2: one versioned envelope for every new field ---------------------------------------------
//
// v1 signed the canonical JSON of a payload *object*: the agent parsed the envelope with zod (which drops
// unknown keys) and checked the signature over that copy, so any field added later either broke every agent in
// the field or was silently ignored by one that did not understand it. v2 signs the exact bytes: the payload
// travels as the canonical JSON *text* that was signed, the agent verifies those bytes before parsing
// anything, and then parses strictly — a field it does not know is a refusal that says to upgrade, never
// ignored. The handshake says which version an agent speaks; the control plane signs v1 for a v1 agent when the
// job can be expressed there and refuses to send it otherwise (see `toV1`).

/** Versions this code can sign and verify. An agent one version behind keeps working. */
export const SUPPORTED_JOB_VERSIONS = [1, 2] as const;
export type JobVersion = (typeof SUPPORTED_JOB_VERSIONS)[number];

/** Which thread picks the run up: any thread of the main interpreter (first at a safe point), the main one, or one. */
export const ThreadChoice = z.union([
  z.literal('auto'),
  z.literal('main'),
  z.object({ tid: z.number().int().positive() }).strict(),
]);
export type ThreadChoice = z.infer<typeof ThreadChoice>;

export const JobOptionsV2 = z
  .object({
    inline: z.boolean(),
    budgetSeconds: z.number().positive().max(3600),
    pickupTimeoutSeconds: z.number().positive().max(600),
    backend: z.enum(['native', 'sys']),
    thread: ThreadChoice,
    /** Interrupt a thread blocked in a syscall CPython retries, if nothing picked up (opt-in, policy-gated). */
    wake: z.boolean(),
  })
  .strict();
export type JobOptionsV2 = z.infer<typeof JobOptionsV2>;

const TargetV2 = z
  .object({
    pid: z.number().int().positive(),
    startTime: z.string().regex(/^\d+$/),
  })
  .strict();

const PayloadBaseV2 = {
  v: z.literal(2),
  jobId: Id,
  agentId: Id,
  requestId: Id,
  target: TargetV2,
  /**
   * The request's content hash (code, params, targets, every option, rollout) that the approvals are for: the
   * control plane verified the attestations over it right before signing.
   */
  contentHash: Sha256Hex,
  /** Ids of the signed approval attestations dispatch verified; empty only for a policy needing none. */
  approvals: z.array(Id).max(16),
  /** Run as break-glass (marked everywhere, reviewed afterwards). */
  breakGlass: z.boolean(),
  issuedAt: z.iso.datetime({ offset: true }),
  notAfter: z.iso.datetime({ offset: true }),
};

export const ExecPayloadV2 = z
  .object({
    ...PayloadBaseV2,
    action: z.literal('exec'),
    kind: z.enum(['library', 'custom']),
    scriptId: z.string().max(128).nullable(),
    code: boundedText(MAX_CODE_BYTES),
    codeHash: Sha256Hex,
    params: JsonObject,
    options: JobOptionsV2,
  })
  .strict();

/** Reading the target's memory from outside: runs no code in it. */
export const InspectPayloadV2 = z
  .object({
    ...PayloadBaseV2,
    action: z.literal('inspect'),
    what: z.enum(['stacks', 'tasks']),
  })
  .strict();

export const JobPayloadV2 = z.discriminatedUnion('action', [ExecPayloadV2, InspectPayloadV2]);
export type JobPayloadV2 = z.infer<typeof JobPayloadV2>;
export type ExecPayloadV2 = z.infer<typeof ExecPayloadV2>;

/** Largest signed payload text (code + params + the rest, with room for JSON escaping). */
export const MAX_PAYLOAD_TEXT_BYTES = 2 * MAX_CODE_BYTES + 2 * 64 * 1024;

export const JobEnvelopeV2 = z
  .object({
    v: z.literal(2),
    /** The canonical JSON text of a JobPayloadV2, exactly the bytes the signature covers (after the domain tag). */
    payload: boundedText(MAX_PAYLOAD_TEXT_BYTES),
    signature: Base64,
    keyId: Sha256Hex,
  })
  .strict();
export type JobEnvelopeV2 = z.infer<typeof JobEnvelopeV2>;

/** Either envelope, as it travels in `job:dispatch`. */
export const AnyJobEnvelope = z.union([JobEnvelopeV2, JobEnvelope]);
export type AnyJobEnvelope = z.infer<typeof AnyJobEnvelope>;

const JOB_DOMAIN_V2 = 'pyreach-job-v2\n';

export function signJobV2(payload: JobPayloadV2, privateKey: KeyObject, publicKey: KeyObject): JobEnvelopeV2 {
  const text = canonicalJson(JobPayloadV2.parse(payload));
  return {
    v: 2,
    payload: text,
    signature: sign(null, Buffer.from(JOB_DOMAIN_V2 + text, 'utf8'), privateKey).toString('base64'),
    keyId: keyIdOf(publicKey),
  };
}

export type AnyJobCheck =
  | { ok: true; version: JobVersion; payload: JobPayloadV2 }
  | {
      ok: false;
      code: 'MALFORMED' | 'BAD_SIGNATURE' | 'UNKNOWN_KEY' | 'CODE_HASH_MISMATCH' | 'UNSUPPORTED_VERSION';
      message: string;
    };

/** A v1 payload in v2's shape, so the agent handles one shape (v1 had no approvals or content hash to carry). */
export function fromV1(p: JobPayload): ExecPayloadV2 {
  return {
    v: 2,
    jobId: p.jobId,
    agentId: p.agentId,
    requestId: p.requestId,
    target: { pid: p.target.pid, startTime: p.target.startTime },
    contentHash: p.codeHash,
    approvals: [],
    breakGlass: false,
    issuedAt: p.issuedAt,
    notAfter: p.notAfter,
    action: 'exec',
    kind: p.kind,
    scriptId: p.scriptId,
    code: p.code,
    codeHash: p.codeHash,
    params: p.params,
    options: {
      inline: p.options.inline,
      budgetSeconds: p.options.budgetSeconds,
      pickupTimeoutSeconds: p.options.pickupTimeoutSeconds,
      backend: p.options.backend,
      thread: p.target.tid ? { tid: p.target.tid } : 'main',
      wake: false,
    },
  };
}

/**
 * The v1 form of a job for an agent that speaks only v1, or why there is none. `thread: auto` narrows to the
 * main thread (one of the threads the approval allowed); wake and inspection have no v1 form.
 */
export function toV1(p: JobPayloadV2): { ok: true; payload: JobPayload } | { ok: false; message: string } {
  if (p.action !== 'exec')
    return { ok: false, message: 'inspection jobs need an agent that speaks protocol v2' };
  if (p.options.wake)
    return { ok: false, message: 'waking a blocked target needs an agent that speaks protocol v2' };
  const t = p.options.thread;
  return {
    ok: true,
    payload: {
      v: 1,
      jobId: p.jobId,
      agentId: p.agentId,
      requestId: p.requestId,
      target: {
        pid: p.target.pid,
        startTime: p.target.startTime,
        ...(typeof t === 'object' ? { tid: t.tid } : {}),
      },
      kind: p.kind,
      scriptId: p.scriptId,
      code: p.code,
      codeHash: p.codeHash,
      params: p.params,
      options: {
        inline: p.options.inline,
        budgetSeconds: p.options.budgetSeconds,
        pickupTimeoutSeconds: p.options.pickupTimeoutSeconds,
        backend: p.options.backend,
      },
      issuedAt: p.issuedAt,
      notAfter: p.notAfter,
    },
  };
}

function unknownKeys(issues: z.core.$ZodIssue[]): string[] {
  return issues.flatMap((i) =>
    i.code === 'unrecognized_keys' ? i.keys.map((k) => [...i.path, k].join('.')) : [],
  );
}

/**
 * Verifies a job envelope of either version: key id, the signature over the exact bytes (v2) or the canonical
 * form (v1), a strict parse of the payload, and that the code matches its hash. Expiry, addressee and replay
 * are the caller's. The payload comes back in v2's shape whichever version arrived.
 */
export function verifyAnyJob(input: unknown, publicKey: KeyObject): AnyJobCheck {
  const version = (input as { v?: unknown } | null)?.v;
  if (version === undefined) {
    const v1 = verifyJob(input, publicKey);
    return v1.ok ? { ok: true, version: 1, payload: fromV1(v1.payload) } : v1;
  }
  if (version !== 2) {
    return {
      ok: false,
      code: 'UNSUPPORTED_VERSION',
      message: `job envelope version ${JSON.stringify(version)} is not one this agent speaks (${SUPPORTED_JOB_VERSIONS.join(', ')}): upgrade the agent`,
    };
  }
  const env = JobEnvelopeV2.safeParse(input);
  if (!env.success) {
    return {
      ok: false,
      code: 'MALFORMED',
      message: `job envelope is malformed: ${z.prettifyError(env.error)}`,
    };
  }
  if (env.data.keyId !== keyIdOf(publicKey)) {
    return { ok: false, code: 'UNKNOWN_KEY', message: 'job was signed with a key this agent does not trust' };
  }
  const text = env.data.payload;
  if (
    !verify(
      null,
      Buffer.from(JOB_DOMAIN_V2 + text, 'utf8'),
      publicKey,
      Buffer.from(env.data.signature, 'base64'),
    )
  ) {
    return {
      ok: false,
      code: 'BAD_SIGNATURE',
      message: 'job signature does not verify against the pinned control-plane key',
    };
  }
  // Only signed bytes are parsed from here on.
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: 'MALFORMED', message: 'signed job payload is not JSON' };
  }
  if (canonicalJson(raw) !== text) {
    // Duplicate keys or a non-canonical form: two readers could see two different jobs in the same bytes.
    return { ok: false, code: 'MALFORMED', message: 'signed job payload is not in canonical form' };
  }
  const payload = JobPayloadV2.safeParse(raw);
  if (!payload.success) {
    const unknown = unknownKeys(payload.error.issues);
    return {
      ok: false,
      code: 'MALFORMED',
      message: unknown.length
        ? `job carries fields this agent does not understand (${unknown.join(', ')}): upgrade the agent`
        : `job payload is malformed: ${z.prettifyError(payload.error)}`,
    };
  }
  const p = payload.data;
  if (p.action === 'exec' && codeHash(p.code) !== p.codeHash) {
    return { ok: false, code: 'CODE_HASH_MISMATCH', message: 'job code does not match its signed hash' };
  }
  return { ok: true, version: 2, payload: p };
}
