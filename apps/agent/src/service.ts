/**
 * `pyreach-agent run`: one long-lived process. Opens its durable stores, ends jobs a previous process left
 * unfinished, discovers Python processes, then keeps one outbound socket.io connection (websocket only) to the
 * control plane, reconnecting with jittered exponential backoff. After every successful authentication it
 * sends the full inventory and then every unacknowledged outbox event, in order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { io, type Socket } from 'socket.io-client';
import {
  AGENT_NAMESPACE,
  AGENT_PROTOCOL_VERSION,
  AuthAck,
  AuthChallenge,
  isRetryableAgentError,
  JobCancel,
  Revoked,
  type AgentProtocolVersion,
  type AgentToServerEvents,
  type JobEvent,
  type ServerToAgentEvents,
} from '@pyreach/protocol/agent';
import type { InventoryDelta } from '@pyreach/protocol/inventory';
import { AuditLog, type AuditEntry } from './audit';
import { Backoff } from './backoff';
import type { AgentConfig } from './config';
import { writeFileDurable } from './durable';
import type { Engine } from './engine';
import { signChallenge, type LoadedIdentity } from './identity';
import type { Inspector } from './inspect';
import { hostFacts, Inventory } from './inventory';
import { localPolicyOf } from './policy';
import { JobRunner } from './jobs';
import { Outbox } from './outbox';
import { hostUserName } from './procinfo';
import { SeenStore } from './seen';
import { AGENT_VERSION } from './version';

export const STATUS_FILE = 'status.json';
const ACK_TIMEOUT_MS = 15_000;
/** A job whose next event the control plane deferred waits this long at first, doubling up to the max. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15_000;

export type ConnectionState =
  'starting' | 'connecting' | 'authenticating' | 'connected' | 'disconnected' | 'revoked' | 'stopped';

export interface AgentStatus {
  pid: number;
  agentId: string;
  server: string;
  state: ConnectionState;
  since: string;
  lastError: string | null;
  lastConnectedAt: string | null;
  reconnectAttempt: number;
  nextAttemptInMs: number | null;
  outboxDepth: number;
  outboxOldestAgeSeconds: number | null;
  runningJobs: string[];
  queuedJobs: string[];
  processes: number;
  /**
   * Protocol version announced on the current (or last) connection: 2, or 1 after a control plane answered
   * UNSUPPORTED_VERSION to 2 (it then signs v1 jobs only: no inspections, no v2 options).
   */
  protocolVersion: AgentProtocolVersion;
  updatedAt: string;
}

export interface AgentServiceOptions {
  random?: () => number;
  procRoot?: string;
  /** [health] Every local audit entry, after it is written (job metrics). */
  onAudit?: (entry: AuditEntry) => void;
  /** Reads inspection jobs (cli.ts: the agent's own program run again as a child). None: they are refused. */
  inspector?: Inspector;
}

type AgentSocket = Socket<ServerToAgentEvents, AgentToServerEvents>;
type Ack = { ok: true } | { ok: false; error: { code: string; message: string } };

export class AgentService {
  readonly outbox: Outbox;
  readonly seen: SeenStore;
  readonly audit: AuditLog;
  readonly inventory: Inventory;
  readonly runner: JobRunner;
  private readonly backoff: Backoff;
  private socket: AgentSocket | null = null;
  /** Bumped whenever the connection is replaced, so loops of an old connection stop. */
  private gen = 0;
  private authed = false;
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private timers: NodeJS.Timeout[] = [];
  private status: AgentStatus;
  private readonly ca: string | undefined;
  private readonly server: string;
  private exitCode = 0;
  /** The version the next handshake announces (see connect_error). */
  private announce: AgentProtocolVersion = AGENT_PROTOCOL_VERSION;
  private stoppedResolve!: (code: number) => void;
  /** Resolves with the exit code once the service has stopped (signal, revocation). */
  readonly stopped: Promise<number>;

  constructor(
    private readonly config: AgentConfig,
    private readonly identity: LoadedIdentity,
    engine: Engine,
    private readonly log: Logger,
    private readonly opts: AgentServiceOptions = {},
  ) {
    this.server = config.server ?? identity.server;
    this.ca = config.caFile ? readFileSync(config.caFile, 'utf8') : undefined;
    this.outbox = new Outbox(config.stateDir);
    this.seen = new SeenStore(config.stateDir);
    this.audit = new AuditLog(config.stateDir, opts.onAudit);
    this.inventory = new Inventory(engine, opts.procRoot);
    this.backoff = new Backoff({ ...config.reconnect, ...(opts.random ? { random: opts.random } : {}) });
    this.runner = new JobRunner({
      config,
      agentId: identity.agentId,
      pinnedKey: identity.pinnedKey,
      outbox: this.outbox,
      seen: this.seen,
      audit: this.audit,
      engine,
      log,
      userName: (uid, pid) => this.inventory.byPid(pid)?.user ?? hostUserName(uid),
      remoteDebugEnabled: (pid, startTime) => {
        const p = this.inventory.byPid(pid);
        return p && p.startTime === startTime ? p.remoteDebugEnabled : null;
      },
      ...(opts.inspector ? { inspector: opts.inspector } : {}),
      ...(opts.procRoot ? { procRoot: opts.procRoot } : {}),
    });
    const now = new Date().toISOString();
    this.status = {
      pid: process.pid,
      agentId: identity.agentId,
      server: this.server,
      state: 'starting',
      since: now,
      lastError: null,
      lastConnectedAt: null,
      reconnectAttempt: 0,
      nextAttemptInMs: null,
      outboxDepth: 0,
      outboxOldestAgeSeconds: null,
      runningJobs: [],
      queuedJobs: [],
      processes: 0,
      protocolVersion: AGENT_PROTOCOL_VERSION,
      updatedAt: now,
    };
    this.stopped = new Promise((r) => (this.stoppedResolve = r));
  }

  /** [health] The connection state, for /readyz and the metrics. */
  get connectionState(): ConnectionState {
    return this.status.state;
  }

  async start(): Promise<void> {
    const unfinished = this.outbox.open();
    this.seen.open();
    const pruned = this.outbox.prune(24 * 3600 * 1000);
    this.log.info(
      { outboxDepth: this.outbox.depth(), unfinished: unfinished.length, pruned, seen: this.seen.size },
      'state loaded',
    );
    this.writeStatus();
    // Honest endings for jobs the previous process left behind run alongside everything else.
    const recovery = this.runner
      .recover(unfinished)
      .catch((err: unknown) => this.log.error({ err }, 'recovery failed'));
    await this.inventory
      .fullScan()
      .catch((err: unknown) => this.log.error({ err }, 'initial discovery failed'));
    this.log.info({ processes: this.inventory.list().length }, 'initial discovery done');
    this.connect();
    this.timers.push(setInterval(() => void this.scan('full'), this.config.scanIntervalSeconds * 1000));
    if (this.config.changeCheckSeconds > 0)
      this.timers.push(setInterval(() => void this.scan('quick'), this.config.changeCheckSeconds * 1000));
    this.timers.push(setInterval(() => this.heartbeat(), this.config.heartbeatSeconds * 1000));
    this.timers.push(setInterval(() => this.writeStatus(), 5000));
    void recovery;
  }

  // ---- connection -----------------------------------------------------------------------------------

  private setState(state: ConnectionState, lastError?: string | null): void {
    if (this.status.state !== state) this.status.since = new Date().toISOString();
    this.status.state = state;
    if (lastError !== undefined) this.status.lastError = lastError;
    this.writeStatus();
  }

  private writeStatus(): void {
    this.status.outboxDepth = this.outbox.depth();
    this.status.outboxOldestAgeSeconds = this.outbox.oldestAgeSeconds();
    this.status.runningJobs = this.runner.runningIds();
    this.status.queuedJobs = this.runner.queuedIds();
    this.status.processes = this.inventory.list().length;
    this.status.reconnectAttempt = this.backoff.attempts;
    this.status.updatedAt = new Date().toISOString();
    try {
      writeFileDurable(
        join(this.config.stateDir, STATUS_FILE),
        JSON.stringify(this.status, null, 2) + '\n',
        0o600,
      );
    } catch (err) {
      this.log.warn({ err }, 'cannot write status file');
    }
  }

  private connect(): void {
    if (this.stopping) return;
    const gen = ++this.gen;
    this.authed = false;
    this.setState('connecting');
    this.status.nextAttemptInMs = null;
    const url = new URL(AGENT_NAMESPACE, new URL(this.server).origin).toString();
    const socket: AgentSocket = io(url, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: 10_000,
      // The highest version this agent speaks; the control plane signs jobs per the version it reads here.
      auth: { v: this.announce, agentId: this.identity.agentId },
      ...(this.ca ? { ca: this.ca } : {}),
    });
    this.socket = socket;
    const clog = this.log.child({ conn: gen });
    this.status.protocolVersion = this.announce;

    socket.on('connect', () => {
      if (gen !== this.gen) return;
      clog.info({ server: this.server }, 'connected; waiting for the challenge');
      this.setState('authenticating');
    });
    socket.on('connect_error', (err: Error & { data?: { code?: string; message?: string } }) => {
      if (gen !== this.gen) return;
      const code = err.data?.code;
      const msg = err.data?.message ?? err.message;
      clog.warn({ code, reason: msg }, 'connection failed');
      if (code === 'AGENT_REVOKED') return this.revoked(msg);
      if (code === 'UNSUPPORTED_VERSION' && this.announce > 1) {
        // A control plane older than this agent: speak v1 with it (it signs v1 jobs, which this agent runs).
        // The next connection after this one ends tries v2 again, in case the control plane was upgraded.
        clog.warn(
          { announced: this.announce, reason: msg },
          'the control plane does not speak protocol v2; connecting again with v1 (no inspections or v2 job options until it is upgraded)',
        );
        this.announce = 1;
      }
      this.scheduleReconnect(`${code ? code + ': ' : ''}${msg}`);
    });
    socket.on('disconnect', (reason) => {
      if (gen !== this.gen) return;
      clog.warn({ reason }, 'disconnected');
      if (this.authed) this.announce = AGENT_PROTOCOL_VERSION;
      this.authed = false;
      this.scheduleReconnect(`disconnected: ${reason}`);
    });
    socket.on('auth:challenge', (raw) => {
      if (gen !== this.gen) return;
      const ch = AuthChallenge.safeParse(raw);
      if (!ch.success) {
        clog.warn('malformed auth challenge');
        socket.disconnect();
        this.scheduleReconnect('malformed auth challenge');
        return;
      }
      const signature = signChallenge(this.identity, ch.data.nonce);
      socket
        .timeout(ACK_TIMEOUT_MS)
        .emit('auth:prove', { nonce: ch.data.nonce, signature }, (err: Error | null, res: unknown) => {
          if (gen !== this.gen) return;
          const ack = AuthAck.safeParse(res);
          if (err || !ack.success || !ack.data.ok) {
            const why = err
              ? 'no answer to auth:prove'
              : ack.success && !ack.data.ok
                ? `${ack.data.error.code}: ${ack.data.error.message}`
                : 'malformed auth ack';
            clog.warn({ reason: why }, 'authentication failed');
            if (ack.success && !ack.data.ok && ack.data.error.code === 'AGENT_REVOKED')
              return this.revoked(ack.data.error.message);
            socket.disconnect();
            this.scheduleReconnect(`authentication failed: ${why}`);
            return;
          }
          const skewMs = Date.parse(ack.data.serverTime) - Date.now();
          if (Math.abs(skewMs) > this.config.clockSkewSeconds * 1000) {
            clog.warn(
              { skewMs },
              'clock differs from the control plane by more than the allowed skew; jobs may be refused as expired',
            );
          }
          this.authed = true;
          this.backoff.reset();
          this.status.lastConnectedAt = new Date().toISOString();
          this.setState('connected', null);
          clog.info({ outboxDepth: this.outbox.depth(), protocolVersion: this.announce }, 'authenticated');
          void this.afterAuth(gen, clog);
        });
    });
    socket.on('job:dispatch', (raw, ack) => {
      if (typeof ack !== 'function') return;
      if (gen !== this.gen || !this.authed) {
        ack({
          ok: false,
          error: { code: 'UNAUTHENTICATED', message: 'agent connection is not authenticated' },
        });
        return;
      }
      ack(this.runner.dispatch(raw));
      this.writeStatus();
    });
    socket.on('job:cancel', (raw) => {
      const m = JobCancel.safeParse(raw);
      if (!m.success) return;
      const found = this.runner.cancel(m.data.jobId);
      clog.info({ jobId: m.data.jobId, found }, 'cancel requested');
    });
    socket.on('agent:revoked', (raw) => {
      const m = Revoked.safeParse(raw);
      this.revoked(m.success ? m.data.reason : 'revoked');
    });
  }

  private scheduleReconnect(reason: string): void {
    if (this.stopping || this.reconnectTimer) return;
    this.gen++; // detach the old socket's handlers and loops
    this.authed = false;
    const old = this.socket;
    this.socket = null;
    old?.removeAllListeners();
    old?.disconnect();
    const delay = this.backoff.next();
    this.status.nextAttemptInMs = delay;
    this.setState('disconnected', reason);
    this.log.info({ delayMs: delay, attempt: this.backoff.attempts }, 'reconnecting after backoff');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private revoked(reason: string): void {
    this.log.error({ reason }, 'this agent was revoked by the control plane; stopping');
    this.audit.write({ event: 'revoked', message: reason });
    this.exitCode = 78; // EX_CONFIG: systemd's RestartPreventExitStatus keeps it down
    this.setState('revoked', reason);
    void this.stop('revoked');
  }

  private emitAck<E extends 'heartbeat' | 'inventory:snapshot' | 'inventory:delta' | 'job:event'>(
    socket: AgentSocket,
    event: E,
    payload: unknown,
  ): Promise<Ack | 'timeout'> {
    return new Promise((resolve) => {
      (
        socket.timeout(ACK_TIMEOUT_MS) as unknown as {
          emit: (e: string, p: unknown, cb: (err: Error | null, res: Ack) => void) => void;
        }
      ).emit(event, payload, (err, res) => {
        if (err) resolve('timeout');
        else
          resolve(
            res && typeof res === 'object' && 'ok' in res
              ? res
              : { ok: false, error: { code: 'BAD_ACK', message: 'malformed ack' } },
          );
      });
    });
  }

  private async afterAuth(gen: number, clog: Logger): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    const snap = await this.emitAck(
      socket,
      'inventory:snapshot',
      this.inventory.snapshot({
        ...hostFacts(AGENT_VERSION, { ...this.identity.labels, ...this.config.labels }),
        localPolicy: localPolicyOf(this.config.policy),
        // [k8s] the node's name in a DaemonSet (the pod's own host name is the pod's name)
        ...(this.config.hostname ? { hostname: this.config.hostname } : {}),
      }),
    );
    if (gen !== this.gen) return;
    if (snap === 'timeout' || !snap.ok) clog.warn({ ack: snap }, 'inventory snapshot not acknowledged');
    else clog.info({ processes: this.inventory.list().length }, 'inventory snapshot sent');
    this.heartbeat();
    this.outbox.clearDeferrals(); // a new connection: try every job again at once
    await this.pump(gen, clog);
  }

  /**
   * Deliver outbox events one at a time until this connection ends: each job's in seq order, jobs in the order
   * received. A deferred event holds back only its own job (with a growing pause); a final refusal is recorded
   * and replaced by its REPORT_REFUSED substitute (see Outbox.reject), so nothing is sent forever.
   */
  private async pump(gen: number, clog: Logger): Promise<void> {
    const attempts = new Map<string, number>();
    while (gen === this.gen && this.authed && this.socket) {
      const ev: JobEvent | null = this.outbox.nextPending();
      if (!ev) {
        const retryAt = this.outbox.nextRetryAt();
        await this.outbox.changed(
          retryAt === null ? 1000 : Math.max(10, Math.min(1000, retryAt - Date.now())),
        );
        continue;
      }
      const res = await this.emitAck(this.socket, 'job:event', ev);
      if (gen !== this.gen) return;
      const key = `${ev.jobId}:${ev.seq}`;
      const code = res === 'timeout' ? 'ACK_TIMEOUT' : res.ok ? null : res.error.code;
      // One table says what is worth sending again (protocol errors.ts, through isRetryableAgentError): the
      // control plane's INTERNAL/SHUTTING_DOWN/UNAUTHENTICATED, and no answer or a garbled one (ACK_TIMEOUT,
      // BAD_ACK: nothing was decided). Everything else it answers is final for this report.
      if (code !== null && isRetryableAgentError(code)) {
        // Not applied, and trying again can succeed: hold back this job only.
        const n = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, n);
        const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(n - 1, 10));
        clog.warn(
          {
            jobId: ev.jobId,
            seq: ev.seq,
            code,
            attempt: n,
            retryInMs: delay,
          },
          'job event not applied by the control plane; retrying later',
        );
        this.outbox.defer(ev.jobId, delay);
        continue;
      }
      attempts.delete(key);
      if (res === 'timeout') continue; // (retried above; this narrows the type)
      if (res.ok) {
        this.outbox.ack(ev.jobId, ev.seq);
        continue;
      }
      // Refused for good: keep the evidence locally, never send it again, end the execution honestly.
      const rejection = { code: res.error.code, message: res.error.message };
      const substitute = this.outbox.reject(ev.jobId, ev.seq, rejection);
      clog.error(
        {
          jobId: ev.jobId,
          seq: ev.seq,
          type: ev.type,
          code: rejection.code,
          reason: rejection.message,
          substitute: substitute ? 'REPORT_REFUSED result' : null,
        },
        'job event refused by the control plane for good',
      );
      this.audit.write({
        event: 'delivery_rejected',
        jobId: ev.jobId,
        seq: ev.seq,
        type: ev.type,
        code: rejection.code,
        message: rejection.message,
        outcome: substitute ? 'replaced_by_report_refused' : 'dropped',
        journal: this.outbox.journalDir(ev.jobId),
      });
    }
  }

  private heartbeat(): void {
    const socket = this.socket;
    if (!socket || !this.authed) return;
    void this.emitAck(socket, 'heartbeat', {
      at: new Date().toISOString(),
      outboxDepth: this.outbox.depth(),
      outboxOldestAgeSeconds: this.outbox.oldestAgeSeconds(),
    });
  }

  private async scan(kind: 'full' | 'quick'): Promise<void> {
    let delta: InventoryDelta | null;
    try {
      delta = kind === 'full' ? await this.inventory.fullScan() : await this.inventory.quickCheck();
    } catch (err) {
      this.log.warn({ err, kind }, 'discovery failed');
      return;
    }
    if (!delta || !this.authed || !this.socket) return; // the next connection sends a full snapshot anyway
    const res = await this.emitAck(this.socket, 'inventory:delta', delta);
    if (res === 'timeout' || !res.ok) this.log.warn({ ack: res }, 'inventory delta not acknowledged');
    else
      this.log.debug(
        { upserted: delta.upserted.length, removed: delta.removed.length },
        'inventory delta sent',
      );
  }

  // ---- lifecycle ------------------------------------------------------------------------------------

  /** Stop taking jobs, finish or record the jobs in hand, flush the outbox, disconnect. */
  async stop(why: string): Promise<number> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    this.log.info({ why }, 'stopping');
    for (const t of this.timers) clearInterval(t);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const left = await this.runner.drain(this.config.shutdownGraceSeconds * 1000);
    if (left.length)
      this.log.warn({ jobs: left }, 'jobs still running at exit; the next start reports their outcome');
    if (this.authed) {
      const flushed = await this.outbox.drained(5000);
      if (!flushed)
        this.log.warn(
          { outboxDepth: this.outbox.depth() },
          'outbox not fully delivered; it is kept on disk for the next start',
        );
    }
    this.gen++;
    this.socket?.removeAllListeners();
    this.socket?.disconnect();
    this.socket = null;
    if (this.status.state !== 'revoked') this.setState('stopped');
    this.outbox.close();
    this.seen.close();
    this.audit.close();
    this.log.info({ outboxDepth: this.outbox.depth() }, 'stopped');
    this.stoppedResolve(this.exitCode);
    return this.exitCode;
  }
}
