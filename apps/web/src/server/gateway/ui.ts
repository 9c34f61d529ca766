/**
 * The /ui namespace: browsers get live fleet, request and execution updates. Authenticated by the same
 * session cookie as the pages (checked once in the middleware); output chunks go to a room per request that
 * a client joins with `subscribe` after a read-permission check.
 */
import type { Namespace, Server } from 'socket.io';
import { Subscribe, type ServerToUiEvents, type UiToServerEvents } from '@pyreach/protocol/ui';
import type { ExecutionState } from '@pyreach/protocol/exec';
import type { Logger } from '../logger';

export interface UiUser {
  id: string;
  role: string;
}

export interface UiGatewayPorts {
  /** Resolves the session from the handshake's cookie header; null when not signed in. */
  authenticate(cookie: string | undefined): Promise<UiUser | null>;
  canRead(user: UiUser, requestId: string): Promise<boolean>;
}

type UiNamespace = Namespace<UiToServerEvents, ServerToUiEvents, Record<string, never>, { user: UiUser }>;

const FLEET_ROOM = 'fleet';
const requestRoom = (id: string) => `request:${id}`;

export class UiGateway {
  readonly nsp: UiNamespace;

  constructor(io: Server, ports: UiGatewayPorts, log: Logger) {
    this.nsp = io.of('/ui') as UiNamespace;
    this.nsp.use((socket, next) => {
      ports.authenticate(socket.handshake.headers.cookie).then(
        (user) => {
          if (!user) {
            const err = new Error('sign in first') as Error & { data: unknown };
            err.data = { code: 'UNAUTHENTICATED', message: 'sign in first' };
            next(err);
            return;
          }
          socket.data.user = user;
          next();
        },
        (err: unknown) => {
          log.error({ err }, 'ui socket authentication failed');
          next(new Error('authentication failed'));
        },
      );
    });
    this.nsp.on('connection', (socket) => {
      void socket.join(FLEET_ROOM);
      socket.on('subscribe', (msg, ack) => {
        const reply = typeof ack === 'function' ? ack : () => undefined;
        const parsed = Subscribe.safeParse(msg);
        if (!parsed.success) {
          reply({ ok: false });
          return;
        }
        ports.canRead(socket.data.user, parsed.data.requestId).then(
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

  fleetChanged(hostId: string | null): void {
    this.nsp.to(FLEET_ROOM).emit('fleet:changed', { hostId });
  }

  requestChanged(requestId: string, state: string): void {
    this.nsp.to(FLEET_ROOM).emit('request:changed', { requestId, state });
  }

  executionUpdate(msg: {
    requestId: string;
    executionId: string;
    state: ExecutionState;
    errorCode?: string | null;
  }): void {
    this.nsp.to(FLEET_ROOM).to(requestRoom(msg.requestId)).emit('execution:update', msg);
  }

  executionOutput(msg: { requestId: string; executionId: string; seq: number; chunk: string }): void {
    this.nsp.to(requestRoom(msg.requestId)).emit('execution:output', msg);
  }

  async close(): Promise<void> {
    this.nsp.disconnectSockets(true);
  }
}
