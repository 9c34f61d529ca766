/**
 * The /agents namespace. Every connection: handshake checked (schema, known agent, not revoked) in the
 * middleware; then a fresh single-use nonce is sent and nothing else is served until `auth:prove` verifies
 * an Ed25519 signature over it with the agent's enrolled key. Every later payload is size-checked and parsed
 * with its schema from @pyreach/protocol before a port is called; failures are acked with a typed error and
 * change nothing. Handlers never throw into socket.io. Unauthenticated handshakes are rate limited per source
 * and their failures audited once per source and window (handshake-guard.ts).
 */
import { randomBytes, verify } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Namespace, Socket } from 'socket.io';
import { z } from 'zod';
import {
  AGENT_EVENT_MAX_BYTES,
  AgentHandshake,
  agentToServerSchemas,
  type AgentErrorCode,
  type AgentProtocolVersion,
  type AgentToServerEvents,
  type ServerToAgentEvents,
} from '@pyreach/protocol/agent';
import { fail, jsonBytes, type Failure } from '@pyreach/protocol/common';
import { isRetryable } from '@pyreach/protocol/errors';
import type { InventoryDelta, InventorySnapshot } from '@pyreach/protocol/inventory';
import { agentAuthMessage, publicKeyFromPem, type AnyJobEnvelope } from '@pyreach/protocol/job';
import type { JobEvent, Heartbeat } from '@pyreach/protocol/agent';
import type { Logger } from '../logger';
import type { Effect, Outcome } from '../services/effects';
import { AppError, asAppError, toFailure } from '../services/errors';
import { agentRoom, type AgentRooms } from './agent-rooms';
import { HandshakeGuard, type FailureSummary, type HandshakeGuardOptions } from './handshake-guard';
import { connectError } from './ui';

export const CHALLENGE_TTL_MS = 10_000;

/** What the gateway needs from the rest of the server (bound services, the Publisher, the drain counter). */
export interface AgentGatewayPorts {
  getAgent(agentId: string): Promise<{ id: string; publicKey: string; revokedAt: Date | null } | null>;
  /** The first failed handshake of a source's window (agentId null when the handshake named none). */
  authFailed(agentId: string | null, reason: string, ip: string | undefined): Promise<void>;
  /** The rest of a source's window of failed handshakes, as one event. */
  authFailures(summary: FailureSummary): Promise<void>;
  /** The client address of a handshake (X-Forwarded-For only from a trusted proxy). */
  clientIp(req: IncomingMessage): string | undefined;
  /** `at` identifies this connection: a later disconnect only marks the agent offline if it is still the current one. */
  connected(agentId: string, info: { ip: string | undefined; at: Date }): Promise<unknown>;
  disconnected(agentId: string, info: { connectedAt: Date | null }): Promise<void>;
  heartbeat(agentId: string, hb: Heartbeat): Promise<void>;
  snapshot(agentId: string, snap: InventorySnapshot): Promise<Outcome<unknown>>;
  delta(agentId: string, delta: InventoryDelta): Promise<Outcome<unknown>>;
  jobEvent(agentId: string, ev: JobEvent): Promise<Outcome<unknown>>;
  /** A job report refused for good (malformed, unstorable): recorded with the reason on this side too. */
  reportRefused(
    agentId: string,
    report: { jobId: string; seq: number; type: string },
    refusal: { code: string; message: string },
  ): Promise<unknown>;
  /** After the commit: what the call changed, to the Publisher. */
  publish(effects: readonly Effect[]): void;
  /** Runs a piece of in-flight work so shutdown can wait for it. */
  track<T>(work: Promise<T>): Promise<T>;
  isShuttingDown(): boolean;
}

/** The agents connected to this process (read by the services for `connectedHere`, by the dispatcher to send). */
export class LocalAgents {
  private readonly sockets = new Map<string, unknown>();
  private readonly versions = new Map<string, AgentProtocolVersion>();
  ids(): string[] {
    return [...this.sockets.keys()];
  }
  /** The protocol version the agent announced on its current connection here (1 if unknown). */
  versionOf(agentId: string): AgentProtocolVersion {
    return this.versions.get(agentId) ?? 1;
  }
  /** @internal the gateway's bookkeeping */
  setVersion(agentId: string, v: AgentProtocolVersion): void {
    this.versions.set(agentId, v);
  }
  isConnectedHere(agentId: string): boolean {
    return this.sockets.has(agentId);
  }
  /** @internal the gateway's bookkeeping */
  get<S>(agentId: string): S | undefined {
    return this.sockets.get(agentId) as S | undefined;
  }
  set(agentId: string, socket: unknown): void {
    this.sockets.set(agentId, socket);
  }
  delete(agentId: string): void {
    this.sockets.delete(agentId);
    this.versions.delete(agentId);
  }
}

interface SocketData {
  agentId: string;
  nonce: string | null;
  nonceExpiresAt: number;
  usedNonces: string[];
  authenticated: boolean;
  connectedAt: Date | null;
  /** The highest protocol version the agent announced at its handshake. */
  protocolVersion: AgentProtocolVersion;
  /** The rate-limit source of this connection, and its client address. */
  source: string;
  ip: string | undefined;
  /** Set once this connection's failure was counted (a refusal, then its disconnect, count once). */
  failed: boolean;
}

type AgentSocket = Socket<AgentToServerEvents, ServerToAgentEvents, Record<string, never>, SocketData>;
type AgentNamespace = Namespace<AgentToServerEvents, ServerToAgentEvents, Record<string, never>, SocketData>;

const refuse = (code: AgentErrorCode, message: string) => new AppError(code, message);

/** What names a job report, read leniently from a payload that may have been refused as a whole. */
const ReportId = z.object({
  jobId: z.string().min(1).max(64),
  seq: z.number().int().positive(),
  type: z.string().max(32),
});

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(payload)'}: ${i.message}`)
    .join('; ');
}

export class AgentGateway {
  readonly nsp: AgentNamespace;
  /** Nonces already answered (kept past their expiry), so a replay is named as such. */
  private readonly spentNonces = new Map<string, number>();
  private readonly guard: HandshakeGuard;

  constructor(
    private readonly rooms: AgentRooms,
    /** Agents authenticated on *this* process, for dispatch. */
    private readonly local: LocalAgents,
    private readonly ports: AgentGatewayPorts,
    private readonly log: Logger,
    handshakes: HandshakeGuardOptions = { burst: 30, refillPerMinute: 30, windowMs: 60_000 },
  ) {
    this.nsp = rooms.nsp as AgentNamespace;
    this.guard = new HandshakeGuard(
      handshakes,
      {
        first: (f) => this.ports.authFailed(f.agentId, f.reason, f.ip),
        summary: (s) => this.ports.authFailures(s),
      },
      (err: unknown) => this.log.error({ err }, 'audit of failed agent handshakes failed'),
    );
    this.nsp.use((socket, next) => {
      const ip = this.ports.clientIp(socket.request);
      const admitted = this.guard.admit(ip);
      if (!admitted.ok) {
        next(
          connectError(
            new AppError(
              'RATE_LIMITED',
              `too many failed agent handshakes from this address; retry in ${admitted.retryAfterSeconds} s`,
              { details: { retryAfterSeconds: admitted.retryAfterSeconds } },
            ),
          ),
        );
        return;
      }
      void this.admit(socket, admitted.source, ip).then(
        () => next(),
        async (err: unknown) => {
          const { error, expected } = asAppError(err);
          if (!expected) this.log.error({ err }, 'agent connection refused by an internal error');
          if (error.code === 'SHUTTING_DOWN') this.guard.succeeded(admitted.source);
          else {
            const named = (socket.handshake.auth as { agentId?: unknown } | null)?.agentId;
            await this.guard.failed(
              admitted.source,
              ip,
              typeof named === 'string' ? named.slice(0, 64) : null,
              expected ? error.code : 'INTERNAL',
            );
          }
          next(connectError(expected ? error : new AppError('INTERNAL', 'connection refused')));
        },
      );
    });
    this.nsp.on('connection', (socket) => this.onConnection(socket));
  }

  /** Whether the agent holds an authenticated connection here, or else on any replica. */
  async isConnectedAnywhere(agentId: string): Promise<boolean> {
    return this.local.isConnectedHere(agentId) || this.rooms.isConnectedAnywhere(agentId);
  }

  /** Sends a signed job and waits for the agent's ack (or a timeout). */
  async dispatch(
    agentId: string,
    envelope: AnyJobEnvelope,
    timeoutMs: number,
  ): Promise<{ ok: true } | Failure> {
    const socket = this.local.get<AgentSocket>(agentId);
    if (!socket) return fail('AGENT_OFFLINE', 'agent is not connected to this server');
    try {
      const res: unknown = await socket.timeout(timeoutMs).emitWithAck('job:dispatch', envelope);
      const parsed = z
        .union([
          z.object({ ok: z.literal(true), accepted: z.literal(true) }),
          z.object({ ok: z.literal(false), error: z.object({ code: z.string(), message: z.string() }) }),
        ])
        .safeParse(res);
      if (!parsed.success) return fail('BAD_ACK', 'agent answered job:dispatch with a malformed ack');
      return parsed.data.ok ? { ok: true } : { ok: false, error: parsed.data.error };
    } catch {
      return fail('ACK_TIMEOUT', `agent did not acknowledge the job within ${timeoutMs} ms`);
    }
  }

  /**
   * A job report answered with a final refusal: the agent will never send it again (it sends a REPORT_REFUSED
   * result in its place), so the reason is recorded here too, against the job it names. Service refusals about
   * the sender or the order (unknown job, another agent's, a duplicate, out of order) are not a bad report.
   */
  private recordRefusal(
    agentId: string,
    payload: unknown,
    error: { code: string; message: string },
    log: Logger,
  ): void {
    if (['NOT_FOUND', 'FORBIDDEN', 'OUT_OF_ORDER'].includes(error.code)) return;
    const named = ReportId.safeParse(payload);
    log.warn(
      { code: error.code, reason: error.message, report: named.success ? named.data : null },
      'job report refused for good',
    );
    if (!named.success) return;
    void this.ports
      .track(this.ports.reportRefused(agentId, named.data, error))
      .catch((err: unknown) => log.error({ err }, 'recording a refused job report failed'));
  }

  async close(): Promise<void> {
    for (const s of this.nsp.sockets.values()) s.disconnect(true);
    await this.guard.close();
  }

  /** Counts this connection's failed handshake once (refusal, timeout or a disconnect before the proof). */
  private handshakeFailed(socket: AgentSocket, reason: string): Promise<void> {
    const d = socket.data;
    // An authenticated agent misbehaving (a second proof) is one event, then its connection ends.
    if (d.authenticated)
      return this.ports.authFailed(d.agentId, reason, d.ip).catch((err: unknown) => {
        this.log.error({ err }, 'audit of failed agent auth failed');
      });
    if (d.failed) return Promise.resolve();
    d.failed = true;
    return this.guard.failed(d.source, d.ip, d.agentId, reason);
  }

  // ---- connection ---------------------------------------------------------------------------------------

  private async admit(socket: AgentSocket, source: string, ip: string | undefined): Promise<void> {
    if (this.ports.isShuttingDown()) throw refuse('SHUTTING_DOWN', 'server is shutting down; retry shortly');
    const auth = socket.handshake.auth as unknown;
    if (jsonBytes(auth) > 4096) throw refuse('PAYLOAD_TOO_LARGE', 'handshake auth is larger than 4096 bytes');
    const parsed = AgentHandshake.safeParse(auth);
    if (!parsed.success) {
      const v = (auth as { v?: unknown } | null)?.v;
      if (v !== undefined && v !== 1)
        throw refuse(
          'UNSUPPORTED_VERSION',
          `protocol version ${String(v)} is not supported (server speaks 1 and 2)`,
        );
      throw refuse('VALIDATION', `handshake auth is invalid: ${describeIssues(parsed.error)}`);
    }
    const agent = await this.ports.getAgent(parsed.data.agentId);
    if (!agent) throw refuse('UNKNOWN_AGENT', 'no enrolled agent has this id; enrol again with a join token');
    if (agent.revokedAt)
      throw refuse('AGENT_REVOKED', 'this agent was revoked; enrol it again with a new join token');
    socket.data = {
      agentId: agent.id,
      nonce: null,
      nonceExpiresAt: 0,
      usedNonces: [],
      authenticated: false,
      connectedAt: null,
      protocolVersion: parsed.data.v,
      source,
      ip,
      failed: false,
    };
  }

  private onConnection(socket: AgentSocket): void {
    const agentId = socket.data.agentId;
    const log = this.log.child({ agentId, socketId: socket.id });
    const nonce = randomBytes(32).toString('base64url');
    socket.data.nonce = nonce;
    socket.data.nonceExpiresAt = Date.now() + CHALLENGE_TTL_MS;
    const authTimer = setTimeout(() => {
      if (!socket.data.authenticated) {
        log.info({ code: 'AUTH_TIMEOUT' }, 'agent did not prove its identity in time');
        void this.handshakeFailed(socket, 'AUTH_TIMEOUT').finally(() => socket.disconnect(true));
      }
    }, CHALLENGE_TTL_MS + 1000);
    authTimer.unref();

    const handlers: {
      [E in keyof AgentToServerEvents]: (
        payload: z.infer<(typeof agentToServerSchemas)[E]>,
      ) => Promise<{ ok: true } | Failure>;
    } = {
      'auth:prove': (proof) => this.prove(socket, proof, log),
      heartbeat: async (hb) => {
        await this.ports.heartbeat(agentId, hb);
        return { ok: true };
      },
      'inventory:snapshot': async (snap) => {
        this.ports.publish((await this.ports.snapshot(agentId, snap)).effects);
        return { ok: true };
      },
      'inventory:delta': async (delta) => {
        this.ports.publish((await this.ports.delta(agentId, delta)).effects);
        return { ok: true };
      },
      'job:event': async (ev) => {
        this.ports.publish((await this.ports.jobEvent(agentId, ev)).effects);
        return { ok: true };
      },
    };

    const known = new Set(Object.keys(handlers));
    socket.onAny((event: string, ...args: unknown[]) => {
      if (known.has(event)) return;
      const ack = args.at(-1);
      log.warn({ event: event.slice(0, 64) }, 'agent sent an unknown event');
      if (typeof ack === 'function')
        (ack as (r: Failure) => void)(fail('UNKNOWN_EVENT', `unknown event '${event.slice(0, 64)}'`));
    });

    for (const name of Object.keys(handlers) as (keyof AgentToServerEvents)[]) {
      socket.on(name, ((payload: unknown, ack: unknown) => {
        const reply = (res: { ok: true } | Failure) => {
          if (typeof ack === 'function') (ack as (r: unknown) => void)(res);
          if (name === 'job:event' && !res.ok && socket.data.authenticated && !isRetryable(res.error.code))
            this.recordRefusal(agentId, payload, res.error, log);
        };
        if (typeof ack !== 'function') {
          log.warn({ event: name }, 'agent event without an ack callback ignored');
          return;
        }
        const size = jsonBytes(payload);
        if (size > AGENT_EVENT_MAX_BYTES[name]) {
          log.warn({ event: name, size }, 'oversized agent payload refused');
          reply(
            fail(
              'PAYLOAD_TOO_LARGE',
              `${name} payload is ${size} bytes; the limit is ${AGENT_EVENT_MAX_BYTES[name]}`,
            ),
          );
          return;
        }
        if (name !== 'auth:prove' && !socket.data.authenticated) {
          reply(fail('UNAUTHENTICATED', 'answer auth:challenge before sending anything else'));
          return;
        }
        if (this.ports.isShuttingDown() && name !== 'job:event') {
          reply(fail('SHUTTING_DOWN', 'server is shutting down; retry after reconnecting'));
          return;
        }
        const parsed = agentToServerSchemas[name].safeParse(payload);
        if (!parsed.success) {
          const message = `${name} payload is invalid: ${describeIssues(parsed.error)}`;
          log.warn(
            { event: name, issues: parsed.error.issues.slice(0, 5).map((i) => i.path.join('.')) },
            'malformed agent payload refused',
          );
          reply(fail('VALIDATION', message));
          if (name === 'auth:prove') socket.disconnect(true);
          return;
        }
        const handler = handlers[name] as (p: unknown) => Promise<{ ok: true } | Failure>;
        void this.ports.track(handler(parsed.data)).then(reply, (err: unknown) => {
          if (asAppError(err).expected) {
            reply(toFailure(err));
            return;
          }
          log.error({ event: name, err }, 'agent event handler failed');
          reply(fail('INTERNAL', 'the server could not process this message; it was not applied'));
        });
      }) as never);
    }

    socket.on('disconnect', (reason) => {
      clearTimeout(authTimer);
      if (!socket.data.authenticated) {
        void this.handshakeFailed(socket, 'NO_PROOF');
        return;
      }
      if (this.local.get(agentId) === socket) {
        this.local.delete(agentId);
        log.info({ reason }, 'agent disconnected');
        void this.ports
          .track(this.ports.disconnected(agentId, { connectedAt: socket.data.connectedAt }))
          .catch((err: unknown) => log.error({ err }, 'marking agent disconnected failed'));
      }
    });

    socket.emit('auth:challenge', { nonce, expiresAt: new Date(socket.data.nonceExpiresAt).toISOString() });
  }

  private async prove(
    socket: AgentSocket,
    proof: { nonce: string; signature: string },
    log: Logger,
  ): Promise<{ ok: true; serverTime: string } | Failure> {
    const d = socket.data;
    const refuse = async (code: AgentErrorCode, message: string): Promise<Failure> => {
      log.warn({ code }, 'agent authentication failed');
      await this.handshakeFailed(socket, code);
      // The ack is written before the disconnect packet; engine.io flushes its buffer before closing.
      setImmediate(() => socket.disconnect(true));
      return fail(code, message);
    };
    const now = Date.now();
    for (const [n, until] of this.spentNonces) if (until < now) this.spentNonces.delete(n);
    if (d.authenticated || d.usedNonces.includes(proof.nonce) || this.spentNonces.has(proof.nonce)) {
      return refuse('NONCE_REPLAYED', 'this challenge nonce was already used');
    }
    if (d.nonce === null || proof.nonce !== d.nonce)
      return refuse('BAD_NONCE', 'nonce does not match the challenge of this connection');
    d.usedNonces.push(d.nonce);
    this.spentNonces.set(d.nonce, now + 10 * 60_000);
    d.nonce = null;
    if (Date.now() > d.nonceExpiresAt)
      return refuse('NONCE_EXPIRED', 'the challenge expired; reconnect for a fresh one');
    const agent = await this.ports.getAgent(d.agentId);
    if (!agent || agent.revokedAt) return refuse('AGENT_REVOKED', 'this agent was revoked');
    let good = false;
    try {
      good = verify(
        null,
        agentAuthMessage(d.agentId, proof.nonce),
        publicKeyFromPem(agent.publicKey),
        Buffer.from(proof.signature, 'base64'),
      );
    } catch {
      good = false;
    }
    if (!good) return refuse('BAD_SIGNATURE', 'signature does not verify against the enrolled public key');
    d.authenticated = true;
    this.guard.succeeded(d.source);
    const previous = this.local.get<AgentSocket>(d.agentId);
    // Registered before the old socket is dropped, so its disconnect handler sees it is no longer current.
    this.local.set(d.agentId, socket);
    this.local.setVersion(d.agentId, d.protocolVersion);
    if (previous && previous !== socket) {
      log.info('agent reconnected; dropping its previous connection');
      previous.disconnect(true);
    }
    // A stale (half-open) connection of this agent on another replica must not be handed jobs any more. The
    // adapter may apply this after the join below, hence the exception for this socket.
    this.nsp.in(agentRoom(d.agentId)).except(socket.id).disconnectSockets(true);
    await socket.join(agentRoom(d.agentId));
    d.connectedAt = new Date();
    await this.ports.connected(d.agentId, { ip: socket.handshake.address, at: d.connectedAt });
    log.info('agent authenticated');
    // A fresh connection may have work waiting for it.
    setImmediate(() => this.ports.publish([{ kind: 'wake', why: 'agent-ready' }]));
    return { ok: true, serverTime: new Date().toISOString() };
  }
}
