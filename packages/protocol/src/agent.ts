/**
 * The /agents namespace and the enrolment route: everything an agent and the control plane say to each other.
 * socket.io's event-map types below are derived from these schemas, so the wire is described once.
 */
import { z } from 'zod';
import {
  Base64,
  Failure,
  Id,
  IsoTime,
  Labels,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  type Json,
} from './common';
import { isRetryable } from './errors';
import { EngineErrorCode, ExecError, ExecResult, ThreadInfo } from './exec';
import { InventoryDelta, InventorySnapshot } from './inventory';
import { AnyJobEnvelope, type JobVersion } from './job';
import { SafeText } from './text';

export const AGENT_NAMESPACE = '/agents';

// ---- enrolment (HTTP POST /api/agents/enroll) ----------------------------------------------------------

export const EnrollRequest = z.object({
  v: z.literal(PROTOCOL_VERSION),
  token: z.string().min(16).max(256),
  /** The agent's Ed25519 public key, SPKI PEM. The private key never leaves the host. */
  publicKey: z.string().min(40).max(1024).startsWith('-----BEGIN PUBLIC KEY-----'),
  hostname: z.string().min(1).max(255),
  labels: Labels.default({}),
  agentVersion: z.string().max(64),
});
export type EnrollRequest = z.infer<typeof EnrollRequest>;

export const EnrollResponse = z.object({
  ok: z.literal(true),
  agentId: Id,
  /** The control plane's job-signing public key (SPKI PEM); the agent pins it. */
  signingPublicKey: z.string(),
  signingKeyId: z.string(),
});
export type EnrollResponse = z.infer<typeof EnrollResponse>;

// ---- connection -----------------------------------------------------------------------------------------

/**
 * The highest protocol version this code's agent speaks. 2: job envelopes of protocol v2 (the exact signed
 * bytes, strict fields: content hash, approvals, break-glass, `options.thread`/`wake`) and inspection jobs.
 * A v2 agent still verifies and runs v1 envelopes, so a control plane that signs v1 keeps working with it.
 */
export const AGENT_PROTOCOL_VERSION = 2 as const;

/** Versions an agent may announce at its handshake: v1 agents (in the field) stay valid. */
export const AgentProtocolVersion = z.union([z.literal(1), z.literal(2)]);
export type AgentProtocolVersion = z.infer<typeof AgentProtocolVersion>;

/**
 * socket.io `auth` payload of the handshake. `v` is the highest protocol version the agent speaks; the control
 * plane keeps it for the connection and signs each job in the envelope version `jobVersionFor(v)` (see
 * `toV1` in ./job for a job a v1 agent cannot be sent). An agent announcing 2 to a control plane that answers
 * `UNSUPPORTED_VERSION` connects again announcing 1.
 */
export const AgentHandshake = z.object({
  v: AgentProtocolVersion,
  agentId: Id,
});
export type AgentHandshake = z.infer<typeof AgentHandshake>;

/** The job envelope version to sign for an agent that announced `v` at its handshake. */
export function jobVersionFor(v: AgentProtocolVersion): JobVersion {
  return v >= 2 ? 2 : 1;
}

export const AuthChallenge = z.object({ nonce: z.string().min(32).max(128), expiresAt: IsoTime });
export type AuthChallenge = z.infer<typeof AuthChallenge>;

export const AuthProof = z.object({ nonce: z.string().min(32).max(128), signature: Base64 });
export type AuthProof = z.infer<typeof AuthProof>;

export const AuthAck = z.union([z.object({ ok: z.literal(true), serverTime: IsoTime }), Failure]);
export type AuthAck = z.infer<typeof AuthAck>;

export const Heartbeat = z.object({
  at: IsoTime,
  /** Items waiting in the agent's durable outbox (a backlog the operator should see). */
  outboxDepth: z.number().int().nonnegative().default(0),
  /**
   * Age in whole seconds of the oldest item still waiting in the outbox (null: empty). A depth that stays up
   * with a growing age is a wedged backlog, not a busy host. Optional on the wire: older agents omit it.
   */
  outboxOldestAgeSeconds: z.number().int().nonnegative().nullable().default(null),
});
export type Heartbeat = z.infer<typeof Heartbeat>;

export const Ack = z.union([z.object({ ok: z.literal(true) }), Failure]);
export type Ack = z.infer<typeof Ack>;

// ---- jobs -----------------------------------------------------------------------------------------------

/** Why an agent refused a job before running it. */
export const JobRefusalCode = z.enum([
  'MALFORMED',
  'BAD_SIGNATURE',
  'UNKNOWN_KEY',
  'CODE_HASH_MISMATCH',
  'EXPIRED',
  'WRONG_AGENT',
  'REPLAYED',
  'TARGET_CHANGED',
  'POLICY_USER_NOT_ALLOWED',
  'POLICY_ROOT_TARGET',
  'POLICY_CUSTOM_CODE',
  'POLICY_CODE_TOO_LARGE',
  'BUSY',
  /** The envelope's version is not one this agent speaks (it says to upgrade the agent). */
  'UNSUPPORTED_VERSION',
  /**
   * The job asks for an option this agent's engine cannot honour. Refused rather than run without it: an
   * approved option is never silently ignored. (`options.wake` is honoured since issue 12: see POLICY_WAKE.)
   */
  'UNSUPPORTED_OPTION',
  /**
   * An inspection of a process that disabled remote debugging (`PYTHON_DISABLE_REMOTE_DEBUG`,
   * `-X disable_remote_debug`), which this host's policy does not allow to be read
   * (`policy.inspect.allowOptedOut`, default false).
   */
  'POLICY_OPTED_OUT',
  /**
   * The job asks to wake a blocked target (`options.wake`: the engine interrupts a blocked system call with
   * ptrace), which this host's policy does not allow (`policy.allowWake`, default false).
   */
  'POLICY_WAKE',
  /**
   * Accepted, but it never started: it was queued behind another job for the same target when the agent shut
   * down or restarted (a job is never run after a restart). Nothing ran; dispatch it again if still needed.
   */
  'INTERRUPTED',
]);
export type JobRefusalCode = z.infer<typeof JobRefusalCode>;

export const DispatchAck = z.union([z.object({ ok: z.literal(true), accepted: z.literal(true) }), Failure]);
export type DispatchAck = z.infer<typeof DispatchAck>;

const JobEventBase = {
  jobId: Id,
  /** Per-job, strictly increasing from 1; the server applies each (jobId, seq) at most once. */
  seq: z.number().int().positive(),
  at: IsoTime,
};

export const MAX_OUTPUT_CHUNK_BYTES = 256 * 1024;

/** A JSON value whose every string and key is safe text (a result value the target returned). */
export const SafeJson: z.ZodType<Json> = z.lazy(() =>
  z.union([
    SafeText,
    z.number().refine(Number.isFinite, 'numbers must be finite'),
    z.boolean(),
    z.null(),
    z.array(SafeJson),
    z.record(SafeText, SafeJson),
  ]),
);

/**
 * Codes of a result the agent itself concludes (on top of the engine's EngineErrorCode):
 * - REPORT_REFUSED: the control plane refused one of this job's reports for good (malformed: VALIDATION,
 *   PAYLOAD_TOO_LARGE, …). The agent sends this result *in place of* the refused report (same seq) so the
 *   execution ends with an honest state; `refusedReport` says which report and why. Reports the job made
 *   after it (more output, its own result) are kept in the agent's local journal and audit log only.
 *
 * Results of an inspection job (`action: inspect`), which the agent reads in a child process it kills on a
 * deadline. Nothing runs in the target in any of these cases:
 * - INSPECT_FAILED: the reader's report has status `failed` (its `errors` say why; the report is the result).
 * - INSPECT_TIMEOUT: the reading child did not answer within `inspection.deadlineSeconds` and was killed.
 * - INSPECT_INVALID: the child's answer was not a report that parses with its schema (or the child died).
 * - INSPECT_DISCARDED: the target changed its user ids while it was read; what was read is not reported.
 * - INSPECT_INTERRUPTED: the agent restarted while the inspection was being read; nothing was kept.
 */
export const AgentResultCode = z.enum([
  'REPORT_REFUSED',
  'INSPECT_FAILED',
  'INSPECT_TIMEOUT',
  'INSPECT_INVALID',
  'INSPECT_DISCARDED',
  'INSPECT_INTERRUPTED',
]);
export type AgentResultCode = z.infer<typeof AgentResultCode>;

export const ReportErrorCode = z.union([EngineErrorCode, AgentResultCode]);
export type ReportErrorCode = z.infer<typeof ReportErrorCode>;

/** Which report the control plane refused, and its answer (REPORT_REFUSED results carry it). */
export const RefusedReport = z.object({
  seq: z.number().int().positive(),
  type: z.string().max(32),
  code: z.string().max(64),
  message: SafeText.max(4096),
});
export type RefusedReport = z.infer<typeof RefusedReport>;

/**
 * A result as it travels from agent to control plane: the engine's ExecResult with every string the target
 * could have influenced required to be safe text (protocol/text.ts), so un-encoded text is refused at
 * validation (VALIDATION, final) instead of failing in the database and being retried forever.
 */
export const ReportedResult = ExecResult.extend({
  errorCode: ReportErrorCode.optional(),
  message: SafeText.max(4096).optional(),
  output: SafeText,
  result: SafeJson.optional(),
  error: ExecError.extend({
    type: SafeText.max(256),
    message: SafeText.max(64 * 1024),
    traceback: SafeText.max(256 * 1024).optional(),
  }).optional(),
  thread: ThreadInfo.extend({ name: SafeText.max(256).nullable().optional() })
    .nullable()
    .optional(),
  refusedReport: RefusedReport.optional(),
});
export type ReportedResult = z.infer<typeof ReportedResult>;

export const JobEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('state'), ...JobEventBase, state: z.enum(['staged', 'picked_up']) }),
  /**
   * The agent accepted the job but runs one job per target process at a time: this one waits behind
   * `behindJobId` (the job now running in that process), with `ahead` jobs before it (the running one
   * included). It starts when they are done, or ends `refused`/EXPIRED if its notAfter passes first;
   * a cancel ends it `cancelled` without running.
   */
  z.object({
    type: z.literal('queued'),
    ...JobEventBase,
    behindJobId: Id,
    ahead: z.number().int().positive(),
  }),
  z.object({ type: z.literal('output'), ...JobEventBase, chunk: SafeText.max(MAX_OUTPUT_CHUNK_BYTES) }),
  z.object({ type: z.literal('result'), ...JobEventBase, result: ReportedResult }),
  z.object({
    type: z.literal('refused'),
    ...JobEventBase,
    code: SafeText.max(64),
    message: SafeText.max(4096),
  }),
]);
export type JobEvent = z.infer<typeof JobEvent>;

export const JobCancel = z.object({ jobId: Id });

export const Revoked = z.object({ reason: z.string().max(1024) });

// ---- event maps -----------------------------------------------------------------------------------------

type Acked<TIn, TAck> = (payload: TIn, ack: (res: TAck) => void) => void;

/** Events the agent emits (server listens). */
export interface AgentToServerEvents {
  'auth:prove': Acked<AuthProof, AuthAck>;
  heartbeat: Acked<Heartbeat, Ack>;
  'inventory:snapshot': Acked<InventorySnapshot, Ack>;
  'inventory:delta': Acked<InventoryDelta, Ack>;
  'job:event': Acked<JobEvent, Ack>;
}

/** Events the server emits (agent listens). */
export interface ServerToAgentEvents {
  'auth:challenge': (challenge: AuthChallenge) => void;
  /** A v1 envelope (`JobEnvelope`) or a v2 one (`JobEnvelopeV2`, `v: 2`), as the agent's handshake allows. */
  'job:dispatch': Acked<AnyJobEnvelope, DispatchAck>;
  'job:cancel': (msg: z.infer<typeof JobCancel>) => void;
  'agent:revoked': (msg: z.infer<typeof Revoked>) => void;
}

/** Runtime catalogue for receivers: event name → schema of its payload. */
export const agentToServerSchemas = {
  'auth:prove': AuthProof,
  heartbeat: Heartbeat,
  'inventory:snapshot': InventorySnapshot,
  'inventory:delta': InventoryDelta,
  'job:event': JobEvent,
} as const satisfies Record<keyof AgentToServerEvents, z.ZodType>;

export const serverToAgentSchemas = {
  'auth:challenge': AuthChallenge,
  'job:dispatch': AnyJobEnvelope,
  'job:cancel': JobCancel,
  'agent:revoked': Revoked,
} as const satisfies Record<keyof ServerToAgentEvents, z.ZodType>;

// ---- size limits per event ------------------------------------------------------------------------------

/**
 * Largest serialised payload the server accepts per agent event. Each is below MAX_MESSAGE_BYTES (the
 * transport's hard cut, which closes the connection) so that an oversized message is answered with a typed
 * PAYLOAD_TOO_LARGE ack and the connection survives.
 */
export const AGENT_EVENT_MAX_BYTES = {
  'auth:prove': 4 * 1024,
  heartbeat: 4 * 1024,
  'inventory:snapshot': MAX_MESSAGE_BYTES - 64 * 1024,
  'inventory:delta': MAX_MESSAGE_BYTES - 64 * 1024,
  'job:event': MAX_MESSAGE_BYTES - 64 * 1024,
} as const satisfies Record<keyof AgentToServerEvents, number>;

/** Typed error codes the /agents namespace answers with (acks and connect_error `data.code`). */
export const AgentErrorCode = z.enum([
  'VALIDATION',
  'PAYLOAD_TOO_LARGE',
  'UNSTORABLE',
  'UNAUTHENTICATED',
  'UNKNOWN_AGENT',
  'AGENT_REVOKED',
  'BAD_NONCE',
  'NONCE_EXPIRED',
  'NONCE_REPLAYED',
  'BAD_SIGNATURE',
  'AUTH_TIMEOUT',
  'UNKNOWN_EVENT',
  'UNSUPPORTED_VERSION',
  'SHUTTING_DOWN',
  'INTERNAL',
]);
export type AgentErrorCode = z.infer<typeof AgentErrorCode>;

/**
 * The codes after which the agent sends the same report again later (the report was not applied, and trying
 * again can succeed): those of AgentErrorCode that protocol's one error table (errors.ts `isRetryable`) marks
 * retryable — INTERNAL (the server could not process it now, e.g. its database was unreachable),
 * SHUTTING_DOWN, UNAUTHENTICATED (after the next successful authentication). Every other answer to a
 * `job:event` — VALIDATION, PAYLOAD_TOO_LARGE, UNSTORABLE (the database refused the data), or a service
 * refusal such as NOT_FOUND — is final for that report: the agent records it and never sends it again. The
 * agent's own ACK_TIMEOUT and BAD_ACK (no answer, a garbled one) are retryable in the same table.
 */
export const RETRYABLE_AGENT_ERROR_CODES: readonly AgentErrorCode[] = AgentErrorCode.options.filter((c) =>
  isRetryable(c),
);

/** What the agent itself concludes about a delivery with no usable answer: nothing was decided, try again. */
export const DELIVERY_TRANSPORT_CODES = ['ACK_TIMEOUT', 'BAD_ACK'] as const;

/** Whether an answer to a `job:event` (or the lack of one) means: send the same report again later. */
export function isRetryableAgentError(code: string): boolean {
  const known =
    (AgentErrorCode.options as readonly string[]).includes(code) ||
    (DELIVERY_TRANSPORT_CODES as readonly string[]).includes(code);
  return known && isRetryable(code);
}
