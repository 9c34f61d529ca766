/**
 * The /ui namespace: browsers get live fleet, request and execution updates. Authenticated by the same
 * session cookie as the pages (checked once in the middleware), or by a service account's API token (the
 * CLI's `request watch`: `auth: { token }` in the handshake or `Authorization: Bearer`; such sockets sit in a
 * room per token, dropped on every replica when it is revoked); output chunks go to a room per request that
 * a client joins with `subscribe` after a read-permission check. Only the Publisher calls the push methods.
 */
import type { Namespace, Server } from 'socket.io';
import { Subscribe, type ServerToUiEvents, type UiEvent, type UiToServerEvents } from '@pyreach/protocol/ui';
import type { Logger } from '../logger';
import { AppError, errorBody } from '../services/errors';

export interface UiUser {
  id: string;
  role: string;
  /** Set when the socket authenticated with an API token. */
  tokenId?: string;
  /** The session the socket was opened with: sign-out closes exactly its sockets. */
  sessionId?: string;
}

export interface UiGatewayPorts {
  /** Resolves the session from the handshake's cookie header; null when not signed in. */
  authenticate(cookie: string | undefined): Promise<UiUser | null>;
  /** Resolves an API token; throws the AppError (TOKEN_INVALID/EXPIRED/REVOKED) that refuses it. */
  authenticateToken?(token: string): Promise<UiUser>;
  canRead(user: UiUser, requestId: string): boolean | Promise<boolean>;
}

type UiNamespace = Namespace<UiToServerEvents, ServerToUiEvents, Record<string, never>, { user: UiUser }>;

const FLEET_ROOM = 'fleet';
const requestRoom = (id: string) => `request:${id}`;
const tokenRoom = (id: string) => `token:${id}`;

/** The API token a handshake presents (socket.io `auth: { token }`, or an Authorization: Bearer header). */
function handshakeToken(h: {
  auth: Record<string, unknown>;
  headers: Record<string, unknown>;
}): string | null {
  if (typeof h.auth.token === 'string') return h.auth.token;
  const header = h.headers.authorization;
  if (typeof header !== 'string') return null;
  return /^Bearer +(\S+) *$/i.exec(header)?.[1] ?? '';
}

const userRoom = (id: string) => `user:${id}`;
const sessionRoom = (id: string) => `session:${id}`;

/** An Error socket.io sends as `connect_error`, its `data` the error's JSON form. */
export function connectError(err: unknown): Error & { data: unknown } {
  const body = errorBody(err);
  return Object.assign(new Error(body.message), { data: body });
}

export class UiGateway {
  readonly nsp: UiNamespace;

  constructor(io: Server, ports: UiGatewayPorts, log: Logger) {
    this.nsp = io.of('/ui') as UiNamespace;
    this.nsp.use((socket, next) => {
      const token = handshakeToken(socket.handshake);
      const who =
        token === null
          ? ports.authenticate(socket.handshake.headers.cookie)
          : ports.authenticateToken
            ? ports.authenticateToken(token)
            : Promise.reject(new AppError('TOKEN_INVALID', 'API tokens are not accepted here'));
      who.then(
        (user) => {
          if (!user) {
            next(connectError(new AppError('UNAUTHENTICATED', 'sign in first')));
            return;
          }
          socket.data.user = user;
          next();
        },
        (err: unknown) => {
          if (!(err instanceof AppError) || err.status >= 500)
            log.error({ err }, 'ui socket authentication failed');
          next(connectError(err));
        },
      );
    });
    this.nsp.on('connection', (socket) => {
      const { id, sessionId, tokenId } = socket.data.user;
      void socket.join([
        FLEET_ROOM,
        userRoom(id),
        ...(sessionId ? [sessionRoom(sessionId)] : []),
        ...(tokenId ? [tokenRoom(tokenId)] : []),
      ]);
      socket.on('subscribe', (msg, ack) => {
        const reply = typeof ack === 'function' ? ack : () => undefined;
        const parsed = Subscribe.safeParse(msg);
        if (!parsed.success) {
          reply({ ok: false });
          return;
        }
        Promise.resolve(ports.canRead(socket.data.user, parsed.data.requestId)).then(
          async (ok) => {
            if (ok) await socket.join(requestRoom(parsed.data.requestId));
            reply({ ok });
          },
          () => reply({ ok: false }),
        );
      });
      socket.on('unsubscribe', (msg) => {
        const parsed = Subscribe.safeParse(msg);
        if (parsed.success) void socket.leave(requestRoom(parsed.data.requestId));
      });
    });
  }

  fleetChanged(msg: UiEvent<'fleet:changed'>): void {
    this.nsp.to(FLEET_ROOM).emit('fleet:changed', msg);
  }

  requestChanged(msg: UiEvent<'request:changed'>): void {
    this.nsp.to(FLEET_ROOM).emit('request:changed', msg);
  }

  executionUpdate(msg: UiEvent<'execution:update'>): void {
    this.nsp.to(FLEET_ROOM).to(requestRoom(msg.requestId)).emit('execution:update', msg);
  }

  executionOutput(msg: UiEvent<'execution:output'>): void {
    this.nsp.to(requestRoom(msg.requestId)).emit('execution:output', msg);
  }

  inspectionChanged(msg: UiEvent<'inspection:changed'>): void {
    this.nsp.to(FLEET_ROOM).emit('inspection:changed', msg);
  }

  /** Drops the sockets opened with a revoked token, on every replica. */
  tokenRevoked(tokenId: string): void {
    this.nsp.in(tokenRoom(tokenId)).disconnectSockets(true);
  }

  /** Closes a person's /ui sockets (one session's, or all of theirs) on every replica (the adapter relays it). */
  closeSessions(userId: string, sessionId?: string): void {
    this.nsp.in(sessionId ? sessionRoom(sessionId) : userRoom(userId)).disconnectSockets(true);
  }

  async close(): Promise<void> {
    this.nsp.disconnectSockets(true);
  }
}
