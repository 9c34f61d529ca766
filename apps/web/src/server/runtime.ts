/**
 * Boot and shutdown of the one server process: database, auth, Next.js (or the API-only router), socket.io
 * with the /agents and /ui namespaces, and the dispatcher, all on one HTTP port.
 */
import { existsSync } from 'node:fs';
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server as IoServer } from 'socket.io';
import { MAX_MESSAGE_BYTES } from '@pyreach/protocol/common';
import { openDatabase, type Database } from '@pyreach/db';
import { CLIENT_IP_HEADER, createAuth, type Auth } from './auth';
import { Cluster } from './cluster';
import { setAppContext } from './context';
import { Dispatcher } from './dispatcher';
import type { Env } from './env';
import { AgentGateway } from './gateway/agents';
import { UiGateway } from './gateway/ui';
import { FsRouter } from './http/fs-router';
import { sendWebResponse, toWebRequest } from './http/node-bridge';
import { Inflight } from './inflight';
import type { Logger } from './logger';
import { createServices, type Services } from './wiring';

export const APP_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Runtime {
  env: Env;
  log: Logger;
  db: Database;
  auth: Auth;
  services: Services;
  agents: AgentGateway;
  ui: UiGateway;
  dispatcher: Dispatcher;
  /** Redis adapter, cross-replica wake-ups and the housekeeping leader lease (a no-op single replica without Redis). */
  cluster: Cluster;
  inflight: Inflight;
  mode: 'next-dev' | 'next' | 'api';
  startedAt: Date;
  shuttingDown: boolean;
}

type NextHandle = (req: IncomingMessage, res: ServerResponse) => Promise<void>;
type NextUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;

function chooseMode(env: Env, log: Logger): Runtime['mode'] {
  if (env.ui === 'api') return 'api';
  const built = existsSync(path.join(APP_ROOT, '.next', 'BUILD_ID'));
  if (env.nodeEnv === 'production') {
    if (built) return 'next';
    if (env.ui === 'next')
      throw new Error('PYREACH_UI=next in production needs `npm run build -w apps/web` first');
    log.warn(
      'no Next.js build found (.next/BUILD_ID); serving the API and sockets only — run `npm run build -w apps/web` for the UI',
    );
    return 'api';
  }
  return 'next-dev';
}

function clientIp(req: IncomingMessage, env: Env): string {
  const peer = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
  if (env.trustedProxies.includes(peer)) {
    const fwd = String(req.headers['x-forwarded-for'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .at(-1);
    if (fwd) return fwd.replace(/^::ffff:/, '');
  }
  return peer;
}

export interface StartedServer {
  runtime: Runtime;
  http: HttpServer;
  port: number;
  stop(reason: string): Promise<void>;
}

export async function startServer(env: Env, log: Logger): Promise<StartedServer> {
  const mode = chooseMode(env, log);
  const db = await openDatabase(
    env.databaseUrl ? { url: env.databaseUrl } : { dataDir: path.join(env.dataDir, 'pglite') },
  );
  log.info({ db: db.kind, migrations: db.migrations }, 'database ready');

  const inflight = new Inflight();
  const http = createServer();
  const io = new IoServer(http, {
    transports: ['websocket'],
    maxHttpBufferSize: MAX_MESSAGE_BYTES,
    // Upgrades for other paths (Next.js dev HMR) must not be destroyed by engine.io.
    destroyUpgrade: false,
    serveClient: false,
    pingInterval: 10_000,
    pingTimeout: 10_000,
  });

  const cluster = await Cluster.start(env, io, log.child({ component: 'cluster' }));

  // The runtime is assembled in steps; the services need the gateways' event sinks and vice versa.
  const runtime = {
    env,
    log,
    db,
    inflight,
    mode,
    cluster,
    startedAt: new Date(),
    shuttingDown: false,
  } as Runtime;
  runtime.services = await createServices(runtime);
  runtime.auth = createAuth({
    env,
    prisma: db.prisma,
    log: log.child({ component: 'auth' }),
    hooks: { onSignIn: (s) => runtime.services.recordSignIn(s.userId, s.ipAddress ?? null) },
  });
  runtime.ui = new UiGateway(io, runtime.services.uiPorts(), log.child({ component: 'ui' }));
  runtime.dispatcher = new Dispatcher(runtime, log.child({ component: 'dispatcher' }));
  runtime.agents = new AgentGateway(io, runtime.services.agentPorts(), log.child({ component: 'agents' }), {
    onReady: (agentId) => runtime.dispatcher.agentReady(agentId),
    onJobEvent: (agentId, ev, outcome) => runtime.services.jobEventApplied(agentId, ev, outcome),
    onInventory: () => runtime.ui.fleetChanged(null),
  });
  setAppContext(runtime);

  let nextHandle: NextHandle | null = null;
  let nextUpgrade: NextUpgrade | null = null;
  let nextClose: (() => Promise<void>) | null = null;
  const router = new FsRouter(path.join(APP_ROOT, 'src', 'app'));
  if (mode === 'api') {
    await router.preload();
  } else {
    const { default: next } = await import('next');
    const app = next({ dev: mode === 'next-dev', dir: APP_ROOT, hostname: env.host, port: env.port });
    await app.prepare();
    nextHandle = app.getRequestHandler() as NextHandle;
    nextUpgrade = app.getUpgradeHandler() as NextUpgrade;
    nextClose = () => app.close();
  }

  http.on('request', (req, res) => {
    const end = inflight.begin();
    res.on('close', end);
    delete req.headers[CLIENT_IP_HEADER];
    req.headers[CLIENT_IP_HEADER] = clientIp(req, env);
    if (runtime.shuttingDown) res.setHeader('connection', 'close');
    const fail = (err: unknown) => {
      log.error({ err, url: req.url }, 'request failed');
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: false, error: { code: 'INTERNAL', message: 'internal error' } }));
      } else res.destroy();
    };
    if (nextHandle) {
      nextHandle(req, res).catch(fail);
      return;
    }
    const url = req.url ?? '/';
    const origin = `http://${req.headers.host ?? 'localhost'}`;
    void (async () => {
      const response = url.startsWith('/api/') ? await router.handle(toWebRequest(req, origin)) : null;
      await sendWebResponse(
        res,
        response ??
          Response.json(
            {
              ok: false,
              error: {
                code: 'NOT_FOUND',
                message: url.startsWith('/api/')
                  ? 'no such API route'
                  : 'the UI is not built; this server runs the API only',
              },
            },
            { status: 404 },
          ),
      );
    })().catch(fail);
  });
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (nextUpgrade && req.url?.startsWith('/_next/'))
      void nextUpgrade(req, socket, head).catch(() => socket.destroy());
  });

  const port = await new Promise<number>((resolve, reject) => {
    http.once('error', reject);
    http.listen(env.port, env.host, () => {
      http.off('error', reject);
      const addr = http.address();
      resolve(typeof addr === 'object' && addr ? addr.port : env.port);
    });
  });
  await cluster.begin((why) => runtime.dispatcher.wake(why));
  runtime.dispatcher.start();
  log.info({ port, host: env.host, mode, db: db.kind }, 'pyreach control plane listening');

  let stopping: Promise<void> | null = null;
  const stop = (reason: string) =>
    (stopping ??= (async () => {
      log.info({ reason, inflight: inflight.size }, 'shutting down');
      runtime.shuttingDown = true;
      // 1. Stop accepting: no new HTTP connections, no new socket connections, no new dispatches.
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      runtime.dispatcher.stop();
      http.closeIdleConnections();
      // 2. Let in-flight HTTP requests, socket handlers (acks) and dispatches finish.
      const drained = await inflight.idle(10_000);
      if (!drained)
        log.warn({ inflight: inflight.size }, 'in-flight work did not finish in 10 s; closing anyway');
      // 3. Close sockets, Next, the HTTP server, then the database.
      await runtime.agents.close();
      await runtime.ui.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
      await cluster.close();
      http.closeAllConnections();
      await closed;
      await nextClose?.().catch(() => undefined);
      await db.close();
      setAppContext(undefined);
      log.info('shutdown complete');
    })());
  return { runtime, http, port, stop };
}
