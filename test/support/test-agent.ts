/**
 * A test agent: a real socket.io client speaking the real /agents protocol with its own Ed25519 key.
 * It enrols with a join token, answers the challenge, verifies every job against the pinned control-plane
 * key and lets a test script what the agent reports back. Reusable by dashboard tests.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import type {
  AgentToServerEvents,
  AuthChallenge,
  EnrollResponse,
  JobEvent,
  ServerToAgentEvents,
} from '@pyreach/protocol/agent';
import type { ExecResult } from '@pyreach/protocol/exec';
import type { InventorySnapshot, PythonProcess } from '@pyreach/protocol/inventory';
import {
  agentAuthMessage,
  publicKeyFromPem,
  verifyAnyJob,
  verifyJob,
  type JobPayload,
  type JobPayloadV2,
} from '@pyreach/protocol/job';

export interface AgentKeys {
  publicKeyPem: string;
  privateKey: KeyObject;
}

export function generateAgentKeys(): AgentKeys {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey };
}

export interface EnrolledAgent extends AgentKeys {
  agentId: string;
  signingPublicKey: string;
  signingKeyId: string;
  baseUrl: string;
}

export async function enroll(
  baseUrl: string,
  token: string,
  opts: { hostname?: string; labels?: Record<string, string>; keys?: AgentKeys } = {},
): Promise<EnrolledAgent> {
  const keys = opts.keys ?? generateAgentKeys();
  const res = await fetch(`${baseUrl}/api/agents/enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      v: 1,
      token,
      publicKey: keys.publicKeyPem,
      hostname: opts.hostname ?? 'test-host',
      labels: opts.labels ?? {},
      agentVersion: 'test-agent/0',
    }),
  });
  const body = (await res.json()) as EnrollResponse | { ok: false; error: { code: string; message: string } };
  if (!body.ok)
    throw Object.assign(new Error(`enrolment refused: ${body.error.code}: ${body.error.message}`), {
      code: body.error.code,
      status: res.status,
    });
  return {
    ...keys,
    agentId: body.agentId,
    signingPublicKey: body.signingPublicKey,
    signingKeyId: body.signingKeyId,
    baseUrl,
  };
}

export class ConnectRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export type JobDecision =
  { ok: true; accepted: true } | { ok: false; error: { code: string; message: string } };

export interface TestAgentOptions {
  /** Override what is signed/sent in auth:prove (to test refusals). */
  prove?: (challenge: AuthChallenge, agent: EnrolledAgent) => { nonce: string; signature: string } | null;
  /** Decide how to ack each dispatched job; default: verify against the pinned key and accept. */
  onJob?: (payload: JobPayload, agent: TestAgent) => JobDecision | Promise<JobDecision>;
  timeoutMs?: number;
  /** Decide how to ack a v2 envelope (default: accept); v1 envelopes go to `onJob`. */
  onJobV2?: (payload: JobPayloadV2, agent: TestAgent) => JobDecision | Promise<JobDecision>;
  /** Protocol version to announce at the handshake (default 1, as agents before protocol v2). */
  v?: 1 | 2;
}

type Ack = { ok: true; [k: string]: unknown } | { ok: false; error: { code: string; message: string } };

export class TestAgent {
  readonly jobs: JobPayload[] = [];
  /**
   * Every job that verified, v1 or v2, in protocol v2's shape (`verifyAnyJob`): what a v2 agent sees. A v2
   * envelope is acked by `onJob` only through this list (`jobs` holds v1 payloads).
   */
  readonly anyJobs: { version: 1 | 2; payload: JobPayloadV2 }[] = [];
  readonly revocations: string[] = [];
  readonly cancels: string[] = [];
  challenge: AuthChallenge | null = null;
  authAck: Ack | null = null;
  private readonly seqs = new Map<string, number>();
  private readonly jobWaiters: { n: number; resolve: () => void }[] = [];

  private constructor(
    readonly socket: Socket<ServerToAgentEvents, AgentToServerEvents>,
    readonly agent: EnrolledAgent,
  ) {}

  /** Connects and authenticates; throws ConnectRefused with the server's typed code when refused. */
  static async connect(agent: EnrolledAgent, opts: TestAgentOptions = {}): Promise<TestAgent> {
    const socket: Socket<ServerToAgentEvents, AgentToServerEvents> = io(`${agent.baseUrl}/agents`, {
      transports: ['websocket'],
      auth: { v: opts.v ?? 1, agentId: agent.agentId },
      reconnection: false,
      forceNew: true,
      timeout: opts.timeoutMs ?? 5000,
    });
    const ta = new TestAgent(socket, agent);
    const pinned = publicKeyFromPem(agent.signingPublicKey);
    socket.on('job:dispatch', (envelope, ack) => {
      void (async () => {
        const any = verifyAnyJob(envelope, pinned);
        if (any.ok) ta.anyJobs.push({ version: any.version, payload: any.payload });
        if (any.ok && any.version === 2) {
          const d = opts.onJobV2 ? await opts.onJobV2(any.payload, ta) : { ok: true, accepted: true };
          ack(d as never);
          return;
        }
        const check = verifyJob(envelope, pinned);
        let decision: JobDecision;
        if (!check.ok) decision = { ok: false, error: { code: check.code, message: check.message } };
        else {
          ta.jobs.push(check.payload);
          decision = opts.onJob ? await opts.onJob(check.payload, ta) : { ok: true, accepted: true };
        }
        ack(decision as never);
        for (const w of ta.jobWaiters.splice(0))
          if (ta.jobs.length >= w.n) w.resolve();
          else ta.jobWaiters.push(w);
      })();
    });
    socket.on('agent:revoked', (msg) => ta.revocations.push(msg.reason));
    socket.on('job:cancel', (msg) => ta.cancels.push(msg.jobId));

    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('timed out connecting the test agent')),
        opts.timeoutMs ?? 10_000,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        if (err) {
          socket.close();
          reject(err);
        } else resolve();
      };
      socket.once('connect_error', (err: Error & { data?: { code?: string; message?: string } }) =>
        done(new ConnectRefused(err.data?.code ?? 'CONNECT_ERROR', err.data?.message ?? err.message)),
      );
      socket.once('auth:challenge', (challenge) => {
        ta.challenge = challenge;
        const custom = opts.prove ? opts.prove(challenge, agent) : undefined;
        // null: do not prove at all (to test what an unauthenticated socket may do).
        if (custom === null) {
          done();
          return;
        }
        const proof = custom ?? {
          nonce: challenge.nonce,
          signature: sign(null, agentAuthMessage(agent.agentId, challenge.nonce), agent.privateKey).toString(
            'base64',
          ),
        };
        socket.emit('auth:prove', proof, (ack) => {
          ta.authAck = ack as Ack;
          if (ack.ok) done();
          else done(new ConnectRefused(ack.error.code, ack.error.message));
        });
      });
    });
    return ta;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Emits any event with any payload (for malformed-input tests) and returns the ack. */
  async raw(event: string, payload: unknown, timeoutMs = 5000): Promise<Ack> {
    return (await (this.socket as unknown as Socket).timeout(timeoutMs).emitWithAck(event, payload)) as Ack;
  }

  heartbeat(outboxDepth = 0): Promise<Ack> {
    return this.raw('heartbeat', { at: new Date().toISOString(), outboxDepth });
  }

  snapshot(
    processes: PythonProcess[],
    labels: Record<string, string> = {},
    hostname = 'test-host',
  ): Promise<Ack> {
    const snap: InventorySnapshot = {
      host: { hostname, os: 'linux', kernel: '6.1.0', arch: 'x86_64', agentVersion: 'test-agent/0', labels },
      processes,
      scannedAt: new Date().toISOString(),
    };
    return this.raw('inventory:snapshot', snap);
  }

  private nextSeq(jobId: string): number {
    const n = (this.seqs.get(jobId) ?? 0) + 1;
    this.seqs.set(jobId, n);
    return n;
  }

  event(ev: Omit<JobEvent, 'seq' | 'at'> & { seq?: number }): Promise<Ack> {
    return this.raw('job:event', {
      at: new Date().toISOString(),
      ...ev,
      seq: ev.seq ?? this.nextSeq(ev.jobId),
    });
  }

  state(jobId: string, state: 'staged' | 'picked_up'): Promise<Ack> {
    return this.event({ type: 'state', jobId, state } as never);
  }

  output(jobId: string, chunk: string): Promise<Ack> {
    return this.event({ type: 'output', jobId, chunk } as never);
  }

  result(jobId: string, result: Partial<ExecResult> & { status: ExecResult['status'] }): Promise<Ack> {
    return this.event({ type: 'result', jobId, result: { output: '', ...result } } as never);
  }

  /** Runs a job the happy way: staged → picked_up → output → succeeded. */
  async succeed(jobId: string, output = 'ok\n', value: unknown = { done: true }): Promise<void> {
    for (const ack of [
      await this.state(jobId, 'staged'),
      await this.state(jobId, 'picked_up'),
      await this.output(jobId, output),
      await this.result(jobId, {
        status: 'succeeded',
        output,
        result: value as never,
        finishedAt: new Date().toISOString(),
      }),
    ]) {
      if (!ack.ok) throw new Error(`job event refused: ${ack.error.code}: ${ack.error.message}`);
    }
  }

  async fail(jobId: string, message = 'boom'): Promise<void> {
    const ack = await this.result(jobId, {
      status: 'failed',
      errorCode: 'USER_EXCEPTION',
      message,
      error: { type: 'RuntimeError', message },
      finishedAt: new Date().toISOString(),
    });
    if (!ack.ok) throw new Error(`job event refused: ${ack.error.code}: ${ack.error.message}`);
  }

  waitForJobs(n: number, timeoutMs = 15_000): Promise<JobPayload[]> {
    if (this.jobs.length >= n) return Promise.resolve(this.jobs.slice(0, n));
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`expected ${n} jobs, got ${this.jobs.length} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.jobWaiters.push({
        n,
        resolve: () => {
          clearTimeout(t);
          resolve(this.jobs.slice(0, n));
        },
      });
    });
  }

  waitForDisconnect(timeoutMs = 5000): Promise<string> {
    if (!this.socket.connected) return Promise.resolve('already');
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('agent was not disconnected')), timeoutMs);
      this.socket.once('disconnect', (reason) => {
        clearTimeout(t);
        resolve(reason);
      });
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** A plausible Python process for inventory snapshots. */
export function fakeProcess(pid: number, over: Partial<PythonProcess> = {}): PythonProcess {
  return {
    pid,
    nsPid: pid,
    startTime: String(100000 + pid),
    uid: 1000,
    user: 'app',
    exe: '/usr/bin/python3.14',
    cmdline: ['python3.14', 'app.py'],
    cwd: '/srv/app',
    pythonVersion: '3.14.0',
    freeThreaded: false,
    remoteDebugEnabled: true,
    inContainer: false,
    container: null,
    threads: [{ tid: pid, main: true }],
    inspectError: null,
    ...over,
  };
}
