/**
 * The composition root: one ControlPlane, built top-down in the order each part needs the one before —
 * database → auth and bound services → Publisher (with the /ui gateway) → agent gateway → dispatcher → HTTP —
 * so nothing is ever half-built and no module of the server imports back up this chain. Boot and graceful
 * shutdown of the one process: Next.js (or the API-only router), socket.io (/agents, /ui) and the dispatcher on
 * one HTTP port.
 */
import { randomBytes } from 'node:crypto';
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
import { can } from '@pyreach/protocol/api';
import { MAX_MESSAGE_BYTES } from '@pyreach/protocol/common';
import { openDatabase } from '@pyreach/db';
import { createAuth, signInScope, type SignInScope } from './auth';
import { Cluster } from './cluster';
import { Dispatcher } from './dispatcher';
import type { Env } from './env';
import { AgentRooms } from './gateway/agent-rooms';
import { AgentGateway, LocalAgents } from './gateway/agents';
import { UiGateway } from './gateway/ui';
import { gateApiRoute } from './http/boundary';
import { FsRouter } from './http/fs-router';
import { errorResponse } from './http/handler';
import { sendWebResponse, toWebRequest } from './http/node-bridge';
import { CLIENT_IP_HEADER, installHttpPlane } from './http/plane';
import { Inflight } from './inflight';
import type { Logger } from './logger';
import { ControlPlaneMetrics } from './metrics';
import { Publisher, WakeSignal } from './publisher';
import { checkReadiness } from './readiness';
import { createServices } from './services';
import { asAppError } from './services/errors';
import { fileSink, webhookSink, type CheckpointSink } from './services/audit-checkpoint';
import { parseAllowList } from './services/notifications-net';
import { secretBoxFrom } from './services/notifications-secrets';
import { NotificationWorker } from './services/notifications-worker';
import { loadOrCreateSigningKey } from './services/signing';
import { applyIdpAuthTime, syncIdpRole } from './services/sso';
import { recordSignIn } from './services/users';

export const APP_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type UiMode = 'next-dev' | 'next' | 'api';

type NextHandle = (req: IncomingMessage, res: ServerResponse) => Promise<void>;
type NextUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;

function chooseMode(env: Env, log: Logger): UiMode {
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

/**
 * Headers on every answer. Pages get their nonce-based Content-Security-Policy from src/proxy.ts (it needs a
 * fresh nonce per request, which Next.js then puts on its own scripts); API answers are data and get a CSP
 * that allows nothing. frame-ancestors / X-Frame-Options: no page of Pyreach may be framed (clickjacking).
 */
function setSecurityHeaders(res: ServerResponse, url: string): void {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('referrer-policy', 'same-origin');
  res.setHeader('x-frame-options', 'DENY');
  if (url.startsWith('/api/'))
    res.setHeader('content-security-policy', "default-src 'none'; frame-ancestors 'none'");
}

export interface ControlPlane {
  http: HttpServer;
  port: number;
  mode: UiMode;
  stop(reason: string): Promise<void>;
}

export async function startControlPlane(env: Env, log: Logger): Promise<ControlPlane> {
  const mode = chooseMode(env, log);
  const clock = () => new Date();
  let shuttingDown = false;

  // 1. The database.
  const db = await openDatabase(
    env.databaseUrl
      ? { url: env.databaseUrl, migrationUrl: env.databaseMigrationUrl }
      : { dataDir: path.join(env.dataDir, 'pglite') },
  );
  log.info({ db: db.kind, migrations: db.migrations }, 'database ready');
  if (!db.auditProtection.protected)
    log.warn(
      { role: db.auditProtection.role, reasons: db.auditProtection.reasons },
      'the audit trail is not protected from the application role (see docs/operations.md, database roles)',
    );

  // 2. Auth and the bound services. Sign-ins are audited through the service module itself: auth comes first.
  const signing = await loadOrCreateSigningKey({ keyFile: env.signingKeyFile, db: db.prisma });
  // The checkpoint key: same file discipline as the job key, a different file, never in the database.
  const auditKey = await loadOrCreateSigningKey({ keyFile: env.audit.keyFile });
  const sinks: CheckpointSink[] = [];
  if (env.audit.sinkFile) sinks.push(fileSink(env.audit.sinkFile));
  if (env.audit.sinkWebhook) sinks.push(webhookSink(env.audit.sinkWebhook, env.audit.webhookAllow));
  // The vote-attestation key: a file next to the signing key, never in the database (a database writer without
  // it can forge no vote dispatch would count).
  const attestation = await loadOrCreateSigningKey({ keyFile: env.attestationKeyFile });
  const auth = createAuth({
    env,
    prisma: db.prisma,
    log: log.child({ component: 'auth' }),
    hooks: {
      onSignIn: async (s) => {
        await recordSignIn(db.prisma, s.userId, s.ipAddress ?? null);
        if (!s.idpProfile || !env.oidc) return;
        // The approval clock of an SSO session starts when the IdP last checked the person (auth_time).
        await applyIdpAuthTime(db.prisma, { ...s, providerId: env.oidc.providerId });
        // An SSO sign-in with a role map: the IdP's claims set the role, audited, before the session is used.
        if (env.oidc.roleMap) {
          const { effects } = await syncIdpRole(
            db.prisma,
            { providerId: env.oidc.providerId, roleMap: env.oidc.roleMap, defaultRole: env.oidc.defaultRole },
            s.userId,
            s.idpProfile,
          );
          signInScope.getStore()?.effects.push(...effects);
        }
      },
    },
  });
  const local = new LocalAgents();
  const services = createServices({
    prisma: db.prisma,
    dbKind: db.kind,
    auditProtection: db.auditProtection,
    signing,
    reportBatchRefused: (err, reports) =>
      log.warn({ err, reports }, 'the database refused a batch of agent reports; applying them one by one'),
    checkpoints: {
      key: auditKey,
      trusted: [auditKey.publicKey],
      sinks,
      sinkFile: env.audit.sinkFile,
      sinkFailed: (sink, err) => log.error({ err, sink }, 'audit checkpoint sink failed'),
      verifyFailed: ({ alert, error, ...failure }) =>
        log.error(
          {
            ...failure,
            ...(alert
              ? { recorded: alert.recorded, eventSeq: alert.seq.toString(), notified: alert.written }
              : {}),
            ...(alert && alert.written < alert.rules
              ? { outboxConflict: `${alert.rules - alert.written} of ${alert.rules} rows already existed` }
              : {}),
            ...(error ? { err: error } : {}),
          },
          error
            ? 'AUDIT CHAIN VERIFICATION FAILED, and recording it failed too'
            : 'AUDIT CHAIN VERIFICATION FAILED',
        ),
    },
    attestation,
    auth: {
      getSession: (headers) => auth.api.getSession({ headers }),
      hashPassword: async (password) => (await auth.$context).password.hash(password),
    },
    presence: local,
    clock,
    config: {
      reauthMinutes: env.reauthMinutes,
      inspectRoles: env.inspectRoles,
      loginRateLimit: env.loginRateLimit,
      agentGraceSeconds: env.agentGraceSeconds,
      agentLostAfterSeconds: env.agentLostAfterSeconds,
      reportBatchMax: env.reportBatchMax,
      publicUrl: env.publicUrl,
      signIn: { password: env.passwordSignIn, ssoProviderId: env.oidc?.providerId ?? null },
      notifications: {
        box: secretBoxFrom((await loadOrCreateSigningKey({ keyFile: env.notify.keyFile })).privateKey),
        allow: parseAllowList(env.notify.allow),
        leaseMs: env.notify.leaseMs,
        timeoutMs: env.notify.timeoutMs,
        backoffMs: env.notify.backoffMs,
        maxAttempts: env.notify.maxAttempts,
      },
    },
  });

  // 3. Sockets and the Publisher (the only code turning effects into pushes, agent commands and wake-ups).
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
  const ui = new UiGateway(
    io,
    {
      authenticate: (cookie) => services.sessions.fromCookie(cookie),
      authenticateToken: async (token) => {
        const sa = await services.serviceAccounts.authenticate(token);
        return { id: sa.id, role: sa.role, tokenId: sa.tokenId };
      },
      canRead: (user) => can(user.role, 'request:read'),
    },
    log.child({ component: 'ui' }),
  );
  const rooms = new AgentRooms(io);
  // Prometheus metrics: a registry of this plane's own (never prom-client's global one), fed by the Publisher.
  const metrics = new ControlPlaneMetrics(
    {
      connectedHere: () => local.ids().length,
      snapshot: () => services.system.metrics(),
      isLeader: () => cluster.isLeader(),
    },
    log.child({ component: 'metrics' }),
  );
  const publisher = new Publisher(ui, rooms, new WakeSignal(), metrics);
  const publish = (effects: Parameters<Publisher['apply']>[0]) => publisher.apply(effects);
  const track = <T>(work: Promise<T>) => inflight.track(work);

  // 4. The agent gateway.
  const agents = new AgentGateway(
    rooms,
    local,
    {
      getAgent: (agentId) => services.agents.credentials(agentId),
      authFailed: (agentId, reason, ip) => services.agents.authFailed(agentId, reason, ip ?? null),
      authFailures: (summary) => services.agents.authFailures(summary),
      clientIp: (req) => clientIp(req, env),
      connected: (agentId, info) => services.agents.connected(agentId, info.at),
      disconnected: (agentId, info) => services.agents.disconnected(agentId, info.connectedAt),
      heartbeat: (agentId, hb) => services.agents.heartbeat(agentId, hb),
      snapshot: (agentId, snap) => services.fleet.snapshot(agentId, snap),
      delta: (agentId, delta) => services.fleet.delta(agentId, delta),
      jobEvent: (agentId, ev) => services.jobs.apply(agentId, ev),
      reportRefused: (agentId, report, refusal) => services.jobs.reportRefused(agentId, report, refusal),
      publish,
      track,
      isShuttingDown: () => shuttingDown,
    },
    log.child({ component: 'agents' }),
    env.agentHandshakes,
  );

  // 5. The dispatcher: only the ports it needs.
  const dispatcher = new Dispatcher(
    {
      connectedAgentIds: () => local.ids(),
      deliver: (agentId, envelope, timeoutMs) => agents.dispatch(agentId, envelope, timeoutMs),
      nextWave: (connected) => services.jobs.nextWave(connected, (id) => local.versionOf(id)),
      dispatchFailed: (job, failure) => services.jobs.dispatchFailed(job, failure),
      housekeeping: () => services.jobs.housekeeping((agentId) => agents.isConnectedAnywhere(agentId)),
      publish,
      wakes: publisher.wakes,
      cluster,
      track,
      intervalMs: env.dispatchIntervalMs,
      replicaId: env.replicaId,
    },
    log.child({ component: 'dispatcher' }),
  );

  // 5b. The notification outbox worker (rows are written with the changes; this only delivers them).
  const notifierId = `${env.replicaId}#${randomBytes(4).toString('hex')}`;
  const notifier = new NotificationWorker({
    // A fresh owner per process: a restarted replica never mistakes its dead predecessor's leases for its own.
    pass: () => services.notifications.deliverDue(notifierId),
    intervalMs: env.notify.intervalMs,
    track,
    onError: (err) => log.error({ err }, 'notification delivery pass failed'),
  });

  // 6. HTTP: route modules reach the services through the one accessor (see http/plane.ts for why).
  installHttpPlane({
    services,
    publish,
    authHandler: async (req) => {
      const scope: SignInScope = { effects: [] };
      const res = await signInScope.run(scope, () => auth.handler(req));
      publish(scope.effects);
      return res;
    },
    signIn: {
      password: env.passwordSignIn,
      sso: env.oidc ? { providerId: env.oidc.providerId, name: env.oidc.name } : null,
    },
    inflight,
    log,
    classify: asAppError,
    isShuttingDown: () => shuttingDown,
    readiness: () =>
      checkReadiness({
        database: () => services.system.ping(),
        redis: (ms) => cluster.redisReady(ms),
        timeoutMs: env.readyTimeoutMs,
      }),
  });
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
    if (shuttingDown) res.setHeader('connection', 'close');
    const fail = (err: unknown) => {
      log.error({ err, url: req.url }, 'request failed');
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: false, error: { code: 'INTERNAL', message: 'internal error' } }));
      } else res.destroy();
    };
    setSecurityHeaders(res, req.url ?? '/');
    const url = req.url ?? '/';
    // Prometheus: outside /api (not a JSON route of the table), before Next.js; 404 unless a token is set.
    if (url === '/metrics' || url.startsWith('/metrics?')) {
      void metrics.serve(req, res, env.metricsToken).catch(fail);
      return;
    }
    if (url.startsWith('/api/')) {
      // Unknown routes and methods answer JSON (Next.js would answer an HTML page and an empty 405).
      const gate = gateApiRoute(req.method ?? 'GET', new URL(url, 'http://x').pathname);
      if (gate.kind !== 'ok') {
        req.resume();
        const response =
          gate.kind === 'not-found'
            ? errorResponse('NOT_FOUND', gate.message)
            : errorResponse('METHOD_NOT_ALLOWED', gate.message);
        if (gate.kind === 'method') response.headers.set('allow', gate.allow.join(', '));
        void sendWebResponse(res, response).catch(fail);
        return;
      }
    }
    if (nextHandle) {
      nextHandle(req, res).catch(fail);
      return;
    }
    const origin = `http://${req.headers.host ?? 'localhost'}`;
    void (async () => {
      const response = url.startsWith('/api/') ? await router.handle(toWebRequest(req, origin)) : null;
      await sendWebResponse(
        res,
        response ??
          errorResponse(
            'NOT_FOUND',
            url.startsWith('/api/')
              ? 'no such API route'
              : 'the UI is not built; this server runs the API only',
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
  // The cluster names them `remote:<why>`, so they are never broadcast again.
  await cluster.begin((why) => publisher.wakes.wake(why as `remote:${string}`));
  dispatcher.start();
  notifier.start();
  // Signed checkpoints of the audit head, periodically (each replica may; one per head is stored).
  const takeCheckpoint = () =>
    void track(services.audit.checkpoint()).catch((err: unknown) =>
      log.error({ err }, 'audit checkpoint failed'),
    );
  const checkpointTimer =
    env.audit.checkpointIntervalMs > 0 ? setInterval(takeCheckpoint, env.audit.checkpointIntervalMs) : null;
  checkpointTimer?.unref();
  // The whole chain against its checkpoints, periodically, on the leader (a failure is audited and notified).
  let verifying = false;
  const verifyChain = () => {
    if (verifying || !cluster.isLeader()) return;
    verifying = true;
    void track(services.audit.verify('periodic'))
      .catch((err: unknown) => log.error({ err }, 'audit chain verification could not run'))
      .finally(() => (verifying = false));
  };
  const verifyTimer =
    env.audit.verifyIntervalMs > 0 ? setInterval(verifyChain, env.audit.verifyIntervalMs) : null;
  verifyTimer?.unref();
  log.info({ port, host: env.host, mode, db: db.kind }, 'pyreach control plane listening');

  let stopping: Promise<void> | null = null;
  const stop = (reason: string) =>
    (stopping ??= (async () => {
      log.info({ reason, inflight: inflight.size }, 'shutting down');
      shuttingDown = true;
      // 1. Stop accepting: no new HTTP connections, no new socket connections, no new dispatches.
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      dispatcher.stop();
      const notifierStopped = notifier.stop();
      if (checkpointTimer) clearInterval(checkpointTimer);
      if (verifyTimer) clearInterval(verifyTimer);
      http.closeIdleConnections();
      // 2. Let in-flight HTTP requests, socket handlers (acks) and dispatches finish.
      const drained = await inflight.idle(10_000);
      if (!drained)
        log.warn({ inflight: inflight.size }, 'in-flight work did not finish in 10 s; closing anyway');
      await notifierStopped;
      // 3. Close sockets, Next, the HTTP server, then the database.
      await agents.close();
      await ui.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
      await cluster.close();
      http.closeAllConnections();
      await closed;
      await nextClose?.().catch(() => undefined);
      await db.close();
      installHttpPlane(undefined);
      log.info('shutdown complete');
    })());
  return { http, port, mode, stop };
}
