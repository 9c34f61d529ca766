/**
 * Test tooling for the real agent process (apps/agent):
 *  - `FakeControlPlane`: the agent's view of a control plane — the real /agents protocol (enrolment route,
 *    challenge auth, acks with jobId+seq dedupe and OUT_OF_ORDER on gaps) on a real socket.io server, with a
 *    signing key the test holds, so a test can send forged, expired, replayed or misaddressed jobs that the
 *    real server would never produce. It can be stopped and restarted on the same port, keeping its state.
 *  - `AgentProcess`: spawns the real CLI (`apps/agent/src/cli.ts` through tsx, or the built bundle) with its
 *    own state directory and config file, collects its JSON logs, and kills it by pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, type Socket } from 'socket.io';
import { AgentHandshake, EnrollRequest, JobEvent, type JobEvent as JobEventT } from '@pyreach/protocol/agent';
import { JOIN_TOKEN_PREFIX } from '@pyreach/protocol/api';
import { MAX_MESSAGE_BYTES } from '@pyreach/protocol/common';
import { InventoryDelta, InventorySnapshot, type PythonProcess } from '@pyreach/protocol/inventory';
import {
  agentAuthMessage,
  codeHash,
  keyIdOf,
  publicKeyFromPem,
  signJob,
  signJobV2,
  type ExecPayloadV2,
  type JobEnvelope,
  type JobEnvelopeV2,
  type JobPayload,
  type JobPayloadV2,
} from '@pyreach/protocol/job';

import { jobPayload } from './jobs';
export type InspectPayloadV2 = Extract<JobPayloadV2, { action: 'inspect' }>;

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const AGENT_CLI = join(REPO, 'apps/agent/src/cli.ts');
export const AGENT_BUNDLE = join(REPO, 'apps/agent/dist/pyreach-agent.mjs');

let built: string | undefined;
/**
 * The agent as it ships (apps/agent/build.mjs), built from the current sources into a private directory once per
 * test process, so concurrent test files never share, and never run a stale dist/. It also starts in about a
 * third of the time tsx needs to transpile the sources at every spawn (~2 s vs ~6.5 s on a loaded machine).
 */
export function testBundle(): string {
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), 'pyreach-agent-bundle-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    execFileSync(process.execPath, [join(REPO, 'apps/agent/build.mjs'), dir], { stdio: 'pipe' });
    built = join(dir, 'pyreach-agent.mjs');
  }
  return built;
}

export interface DispatchRecord {
  jobId: string;
  ack: unknown;
}

export class FakeControlPlane {
  readonly signing = generateKeyPairSync('ed25519');
  readonly tokens = new Set<string>();
  readonly agents = new Map<
    string,
    { publicKey: KeyObject; hostname: string; labels: Record<string, string> }
  >();
  /** Every job event applied (first delivery of each jobId+seq), in order. */
  readonly applied: JobEventT[] = [];
  /** Every job:event received, duplicates included. */
  readonly received: JobEventT[] = [];
  readonly dispatches: DispatchRecord[] = [];
  readonly snapshots: InventorySnapshot[] = [];
  readonly deltas: InventoryDelta[] = [];
  readonly heartbeats: unknown[] = [];
  processes = new Map<string, PythonProcess>();
  /** Authenticated connections since start (reconnect counting). */
  authCount = 0;
  private http: HttpServer | null = null;
  private io: Server | null = null;
  private socket: Socket | null = null;
  port = 0;
  private lastSeq = new Map<string, number>();
  private waiters = new Set<() => void>();

  /**
   * The highest protocol version this control plane accepts at the handshake. 1 plays a control plane from
   * before protocol v2: an agent announcing 2 is refused UNSUPPORTED_VERSION, as the real gateway does.
   */
  speaks: 1 | 2 = 2;
  /** The version each connection attempt announced, in order. */
  readonly handshakes: number[] = [];

  /** Serve HTTPS with this key and certificate (PEM) instead of plain HTTP. */
  tls: { key: string; cert: string } | null = null;

  /**
   * Play a control plane that refuses some valid reports (as a database might): return the error to ack
   * with, or null to apply the event as usual. Refused events are in `received` but not in `applied`.
   */
  refuseEvent: ((ev: JobEventT) => { code: string; message: string } | null) | null = null;

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  get keyId(): string {
    return keyIdOf(this.signing.publicKey);
  }

  newToken(): string {
    // A real token's shape: base64url alone starts with '-' one time in 64, which the agent's CLI reads as an option.
    const t = `${JOIN_TOKEN_PREFIX}${randomBytes(24).toString('base64url')}`;
    this.tokens.add(t);
    return t;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Wait until `cond` holds (re-checked on every message). */
  async until<T>(
    cond: () => T | undefined | false | null,
    timeoutMs = 20_000,
    what = 'condition',
  ): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = cond();
      if (v) return v;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const w = (): void => {
          this.waiters.delete(w);
          clearTimeout(t);
          r();
        };
        const t = setTimeout(w, Math.min(left, 200));
        this.waiters.add(w);
      });
    }
  }

  async start(port = 0): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      if (req.method === 'POST' && req.url === '/api/agents/enroll') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const parsed = EnrollRequest.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          const reply = (status: number, body: unknown): void => {
            res.writeHead(status, { 'content-type': 'application/json' });
            res.end(JSON.stringify(body));
          };
          if (!parsed.success)
            return reply(400, { ok: false, error: { code: 'VALIDATION', message: 'bad enrolment request' } });
          if (!this.tokens.delete(parsed.data.token))
            return reply(401, {
              ok: false,
              error: { code: 'BAD_TOKEN', message: 'unknown or used join token' },
            });
          const agentId = `agent_${randomBytes(6).toString('hex')}`;
          this.agents.set(agentId, {
            publicKey: publicKeyFromPem(parsed.data.publicKey),
            hostname: parsed.data.hostname,
            labels: parsed.data.labels,
          });
          reply(200, {
            ok: true,
            agentId,
            signingPublicKey: this.signing.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
            signingKeyId: this.keyId,
          });
        });
        return;
      }
      res.writeHead(404).end();
    };
    const http: HttpServer = this.tls
      ? createHttpsServer({ key: this.tls.key, cert: this.tls.cert }, handler)
      : createServer(handler);
    // The real server's transport limit (apps/web runtime), so a report too large for it fails here too.
    const io = new Server(http, { transports: ['websocket'], maxHttpBufferSize: MAX_MESSAGE_BYTES });
    io.of('/agents').use((socket, next) => {
      const raw = socket.handshake.auth as { v?: number };
      if (typeof raw.v === 'number') this.handshakes.push(raw.v);
      const parsed = AgentHandshake.safeParse(raw);
      if (typeof raw.v === 'number' && (!parsed.success || raw.v > this.speaks)) {
        const err = new Error('unsupported version') as Error & { data?: unknown };
        err.data = {
          code: 'UNSUPPORTED_VERSION',
          message: `protocol version ${raw.v} is not supported (server speaks ${this.speaks})`,
        };
        return next(err);
      }
      const auth = parsed.success ? parsed.data : { agentId: undefined };
      if (!auth.agentId || !this.agents.has(auth.agentId)) {
        const err = new Error('unknown agent') as Error & { data?: unknown };
        err.data = { code: 'UNKNOWN_AGENT', message: 'unknown agent' };
        return next(err);
      }
      next();
    });
    io.of('/agents').on('connection', (socket) => this.onConnection(socket));
    await new Promise<void>((r) => http.listen(port, '127.0.0.1', () => r()));
    this.port = (http.address() as { port: number }).port;
    this.http = http;
    this.io = io;
  }

  private onConnection(socket: Socket): void {
    const agentId = (socket.handshake.auth as { agentId: string }).agentId;
    const nonce = randomBytes(32).toString('base64url');
    let authed = false;
    socket.on('auth:prove', (proof: { nonce: string; signature: string }, ack: (r: unknown) => void) => {
      const key = this.agents.get(agentId)!.publicKey;
      const good =
        proof.nonce === nonce &&
        verify(null, agentAuthMessage(agentId, nonce), key, Buffer.from(proof.signature, 'base64'));
      if (!good) {
        ack({ ok: false, error: { code: 'BAD_SIGNATURE', message: 'bad proof' } });
        socket.disconnect(true);
        return;
      }
      authed = true;
      this.socket = socket;
      this.authCount++;
      ack({ ok: true, serverTime: new Date().toISOString() });
      this.notify();
    });
    const guard = (ack: unknown): ack is (r: unknown) => void => typeof ack === 'function' && authed;
    socket.on('heartbeat', (hb: unknown, ack: unknown) => {
      if (!guard(ack)) return;
      this.heartbeats.push(hb);
      ack({ ok: true });
      this.notify();
    });
    socket.on('inventory:snapshot', (raw: unknown, ack: unknown) => {
      if (!guard(ack)) return;
      const snap = InventorySnapshot.safeParse(raw);
      if (!snap.success)
        return ack({ ok: false, error: { code: 'VALIDATION', message: snap.error.message } });
      this.snapshots.push(snap.data);
      this.processes = new Map(snap.data.processes.map((p) => [String(p.pid), p]));
      ack({ ok: true });
      this.notify();
    });
    socket.on('inventory:delta', (raw: unknown, ack: unknown) => {
      if (!guard(ack)) return;
      const d = InventoryDelta.safeParse(raw);
      if (!d.success) return ack({ ok: false, error: { code: 'VALIDATION', message: d.error.message } });
      this.deltas.push(d.data);
      for (const r of d.data.removed) this.processes.delete(String(r.pid));
      for (const p of d.data.upserted) this.processes.set(String(p.pid), p);
      ack({ ok: true });
      this.notify();
    });
    socket.on('job:event', (raw: unknown, ack: unknown) => {
      if (!guard(ack)) return;
      const ev = JobEvent.safeParse(raw);
      if (!ev.success) return ack({ ok: false, error: { code: 'VALIDATION', message: ev.error.message } });
      this.received.push(ev.data);
      const refusal = this.refuseEvent?.(ev.data);
      if (refusal) {
        this.notify();
        return ack({ ok: false, error: refusal });
      }
      const last = this.lastSeq.get(ev.data.jobId) ?? 0;
      if (ev.data.seq <= last) return ack({ ok: true }); // duplicate: acked, not applied
      if (ev.data.seq !== last + 1)
        return ack({ ok: false, error: { code: 'OUT_OF_ORDER', message: `expected seq ${last + 1}` } });
      this.lastSeq.set(ev.data.jobId, ev.data.seq);
      this.applied.push(ev.data);
      ack({ ok: true });
      this.notify();
    });
    socket.emit('auth:challenge', { nonce, expiresAt: new Date(Date.now() + 10_000).toISOString() });
  }

  isConnected(): boolean {
    return this.socket?.connected === true;
  }

  /** Close every connection and the listener (a control-plane crash as the agent sees it). State is kept. */
  async stop(): Promise<void> {
    this.socket = null;
    this.io?.disconnectSockets(true);
    await new Promise<void>((r) => (this.io ? this.io.close(() => r()) : r()));
    this.io = null;
    this.http = null;
  }

  /** A job payload addressed to `agentId`, valid for a minute. */
  job(
    agentId: string,
    target: { pid: number; startTime: string },
    code: string,
    over: Partial<JobPayload> = {},
  ): JobPayload {
    return jobPayload({ agentId, target, code, codeHash: codeHash(code), ...over });
  }

  sign(p: JobPayload): JobEnvelope {
    return signJob(p, this.signing.privateKey, this.signing.publicKey);
  }

  /** A protocol v2 exec payload addressed to `agentId`, valid for a minute, with two (test) approvals. */
  jobV2(
    agentId: string,
    target: { pid: number; startTime: string },
    code: string,
    over: Partial<ExecPayloadV2> = {},
  ): ExecPayloadV2 {
    return {
      v: 2,
      jobId: `job_${randomBytes(8).toString('hex')}`,
      agentId,
      requestId: `req_${randomBytes(4).toString('hex')}`,
      target,
      contentHash: randomBytes(32).toString('hex'),
      approvals: [`att_${randomBytes(4).toString('hex')}`, `att_${randomBytes(4).toString('hex')}`],
      breakGlass: false,
      issuedAt: new Date().toISOString(),
      notAfter: new Date(Date.now() + 60_000).toISOString(),
      action: 'exec',
      kind: 'custom',
      scriptId: null,
      code,
      codeHash: codeHash(code),
      params: {},
      options: {
        inline: false,
        budgetSeconds: 30,
        pickupTimeoutSeconds: 10,
        backend: 'native',
        thread: 'main',
        wake: false,
      },
      ...over,
    };
  }

  /** A protocol v2 inspection payload (stacks or tasks) addressed to `agentId`. */
  inspectJob(
    agentId: string,
    target: { pid: number; startTime: string },
    what: 'stacks' | 'tasks',
    over: Partial<InspectPayloadV2> = {},
  ): InspectPayloadV2 {
    return {
      v: 2,
      jobId: `job_${randomBytes(8).toString('hex')}`,
      agentId,
      requestId: `req_${randomBytes(4).toString('hex')}`,
      target,
      contentHash: randomBytes(32).toString('hex'),
      approvals: [],
      breakGlass: false,
      issuedAt: new Date().toISOString(),
      notAfter: new Date(Date.now() + 60_000).toISOString(),
      action: 'inspect',
      what,
      ...over,
    };
  }

  signV2(p: JobPayloadV2): JobEnvelopeV2 {
    return signJobV2(p, this.signing.privateKey, this.signing.publicKey);
  }

  /**
   * Sign any text as a v2 payload with the pinned key: what a control plane newer than the agent could send
   * (a field the agent does not know), or one that made a mistake.
   */
  signV2Text(text: string): JobEnvelopeV2 {
    return {
      v: 2,
      payload: text,
      signature: sign(null, Buffer.from('pyreach-job-v2\n' + text, 'utf8'), this.signing.privateKey).toString(
        'base64',
      ),
      keyId: this.keyId,
    };
  }

  /** Emit job:dispatch on the agent's connection and return its ack. */
  async dispatch(
    envelope: unknown,
    timeoutMs = 10_000,
  ): Promise<{ ok: boolean; error?: { code: string; message: string } }> {
    const socket = await this.until(
      () => (this.socket?.connected ? this.socket : null),
      20_000,
      'an authenticated agent',
    );
    const ack = (await socket.timeout(timeoutMs).emitWithAck('job:dispatch', envelope)) as {
      ok: boolean;
      error?: { code: string; message: string };
    };
    const payload = (envelope as { payload?: unknown }).payload;
    let jobId = (payload as { jobId?: string } | undefined)?.jobId ?? '?';
    if (typeof payload === 'string') {
      try {
        jobId = (JSON.parse(payload) as { jobId?: string }).jobId ?? '?';
      } catch {
        jobId = '?';
      }
    }
    this.dispatches.push({ jobId, ack });
    return ack;
  }

  /** Emit job:cancel on the agent's connection. */
  cancel(jobId: string): void {
    this.socket?.emit('job:cancel', { jobId });
  }

  eventsOf(jobId: string): JobEventT[] {
    return this.applied.filter((e) => e.jobId === jobId);
  }

  resultOf(jobId: string): Extract<JobEventT, { type: 'result' }> | undefined {
    return this.applied.find(
      (e): e is Extract<JobEventT, { type: 'result' }> => e.jobId === jobId && e.type === 'result',
    );
  }
}

/** A throw-away CA and a certificate for 127.0.0.1 signed by it (openssl), for pinned-CA tests. */
export function makeTestPki(): { dir: string; caFile: string; key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-pki-'));
  const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=pyreach test CA',
  ]);
  run([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  run([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  ]);
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    key: readFileSync(join(dir, 'server.key'), 'utf8'),
    cert: readFileSync(join(dir, 'server.pem'), 'utf8'),
  };
}

export interface AgentProcessOptions {
  stateDir?: string;
  config?: Record<string, unknown>;
  /**
   * What runs: by default the shipped single-file bundle, built from the current sources once per test process
   * (testBundle); true: apps/agent/dist's; a path: that copy; false: the TS sources through tsx.
   */
  bundle?: boolean | string;
  env?: Record<string, string>;
}

/** The real agent CLI as a child process. */
export class AgentProcess {
  readonly stateDir: string;
  readonly configFile: string;
  private child: ChildProcess | null = null;
  private out = '';
  exited: Promise<number | null> = Promise.resolve(null);

  constructor(private readonly opts: AgentProcessOptions = {}) {
    this.stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'pyreach-agent-state-'));
    this.configFile = join(this.stateDir, '..', `${this.stateDir.split('/').pop()}.json`);
    this.writeConfig(opts.config ?? {});
  }

  writeConfig(config: Record<string, unknown>): void {
    writeFileSync(
      this.configFile,
      JSON.stringify(
        {
          stateDir: this.stateDir,
          logLevel: 'debug',
          scanIntervalSeconds: 30,
          changeCheckSeconds: 1,
          heartbeatSeconds: 5,
          reconnect: { minMs: 200, maxMs: 1000 },
          ...config,
        },
        null,
        2,
      ),
    );
  }

  private command(args: string[]): string[] {
    const bundle =
      this.opts.bundle === true
        ? AGENT_BUNDLE
        : this.opts.bundle === undefined
          ? testBundle()
          : this.opts.bundle;
    return bundle ? [bundle, ...args] : ['--import', 'tsx', AGENT_CLI, ...args];
  }

  private env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PYREACH_AGENT_CONFIG: this.configFile,
      ...this.opts.env,
    };
    return env;
  }

  /** Run a one-shot command (enroll, status) to completion. */
  async cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, this.command(args), {
      cwd: REPO,
      env: this.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    return { code, stdout, stderr };
  }

  start(): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null)
      throw new Error('agent already running');
    const child = spawn(process.execPath, this.command(['run']), {
      cwd: REPO,
      env: this.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((r) => child.on('exit', (c) => r(c)));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  logs(): string {
    return this.out;
  }

  /** Parsed JSON log lines. */
  logLines(): Record<string, unknown>[] {
    return this.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  }

  async waitForLog(msg: string, timeoutMs = 20_000, from = 0): Promise<Record<string, unknown>> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const hit = this.logLines()
        .slice(from)
        .find((l) => l.msg === msg);
      if (hit) return hit;
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined)
        throw new Error(
          `agent exited (${this.child.exitCode}) before logging "${msg}":\n${this.out.slice(-3000)}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`agent did not log "${msg}" within ${timeoutMs} ms:\n${this.out.slice(-3000)}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return c?.exitCode ?? null;
    c.kill(signal);
    return this.exited;
  }

  audit(): Record<string, unknown>[] {
    const p = join(this.stateDir, 'audit.jsonl');
    if (!existsSync(p)) return [];
    return readFileSync(p, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}
