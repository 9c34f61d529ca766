/**
 * The /ui namespace: browsers get live fleet, request and execution updates. Authenticated by the same
 * session cookie as the pages (checked once in the middleware); output chunks go to a room per request that
 * a client joins with `subscribe` after a read-permission check. Only the Publisher calls the push methods.
 */
import type { Namespace, Server } from 'socket.io';
import { Subscribe, type ServerToUiEvents, type UiEvent, type UiToServerEvents } from '@pyreach/protocol/ui';
import type { Logger } from '../logger';
import { AppError, errorBody } from '../services/errors';

export interface UiUser {
  id: string;
  role: string;
  /** The session the socket was opened with: sign-out closes exactly its sockets. */
  sessionId?: string;
}

export interface UiGatewayPorts {
  /** Resolves the session from the handshake's cookie header; null when not signed in. */
  authenticate(cookie: string | undefined): Promise<UiUser | null>;
  canRead(user: UiUser, requestId: string): boolean | Promise<boolean>;
}

type UiNamespace = Namespace<UiToServerEvents, ServerToUiEvents, Record<string, never>, { user: UiUser }>;

const FLEET_ROOM = 'fleet';
const requestRoom = (id: string) => `request:${id}`;
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
      ports.authenticate(socket.handshake.headers.cookie).then(
        (user) => {
          if (!user) {
            next(connectError(new AppError('UNAUTHENTICATED', 'sign in first')));
            return;
          }
          socket.data.user = user;
          next();
        },
        (err: unknown) => {
          log.error({ err }, 'ui socket authentication failed');
          next(connectError(err));
        },
      );
    });
    this.nsp.on('connection', (socket) => {
      const { id, sessionId } = socket.data.user;
      void socket.join([FLEET_ROOM, userRoom(id), ...(sessionId ? [sessionRoom(sessionId)] : [])]);
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

  /** Closes a person's /ui sockets (one session's, or all of theirs) on every replica (the adapter relays it). */
  closeSessions(userId: string, sessionId?: string): void {
    this.nsp.in(sessionId ? sessionRoom(sessionId) : userRoom(userId)).disconnectSockets(true);
  }

  async close(): Promise<void> {
    this.nsp.disconnectSockets(true);
  }
}
