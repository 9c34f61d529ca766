/**
 * The /agents namespace and the enrolment route: everything an agent and the control plane say to each other.
 * socket.io's event-map types below are derived from these schemas, so the wire is described once.
 */
import { z } from 'zod';
import { Base64, Failure, Id, IsoTime, Labels, MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from './common';
import { ExecResult } from './exec';
import { InventoryDelta, InventorySnapshot } from './inventory';
import { JobEnvelope } from './job';

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

/** socket.io `auth` payload of the handshake. */
export const AgentHandshake = z.object({
  v: z.literal(PROTOCOL_VERSION),
  agentId: Id,
});
export type AgentHandshake = z.infer<typeof AgentHandshake>;

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

export const JobEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('state'), ...JobEventBase, state: z.enum(['staged', 'picked_up']) }),
  z.object({ type: z.literal('output'), ...JobEventBase, chunk: z.string().max(MAX_OUTPUT_CHUNK_BYTES) }),
  z.object({ type: z.literal('result'), ...JobEventBase, result: ExecResult }),
  z.object({
    type: z.literal('refused'),
    ...JobEventBase,
    code: z.string().max(64),
    message: z.string().max(4096),
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
  'job:dispatch': Acked<JobEnvelope, DispatchAck>;
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
