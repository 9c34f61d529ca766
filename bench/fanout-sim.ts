/**
 * Simulated agents for bench/fanout.ts (a child process; driven over IPC). Each agent is a socket.io-client on
 * the /agents namespace, websocket transport, that answers the Ed25519 challenge with its own key, sends
 * heartbeats, and on `job:dispatch` records the receipt time, acks, and reports the job succeeded at once (and
 * tells the parent whether the server accepted that report).
 */
import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import { agentAuthMessage } from '@pyreach/protocol/job';

type Cmd =
  | {
      type: 'connect';
      url: string;
      agents: { agentId: string; privateKeyPem: string }[];
      heartbeatSeconds: number;
      parallel: number;
    }
  | { type: 'stop' };

const sockets: Socket[] = [];
const timers: NodeJS.Timeout[] = [];
const send = (m: unknown) => process.send?.(m);

function connectOne(
  url: string,
  agentId: string,
  key: KeyObject,
  heartbeatSeconds: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = io(`${url}/agents`, {
      transports: ['websocket'],
      auth: { v: 1, agentId },
      reconnection: false,
      forceNew: true,
      timeout: 60_000,
    });
    sockets.push(socket);
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      resolve(ok);
    };
    socket.once('connect_error', () => done(false));
    socket.once('disconnect', () => {
      if (!settled) socket.close();
      done(false);
    });
    socket.once('auth:challenge', (ch: { nonce: string }) => {
      const signature = sign(null, agentAuthMessage(agentId, ch.nonce), key).toString('base64');
      socket
        .timeout(60_000)
        .emit('auth:prove', { nonce: ch.nonce, signature }, (err: unknown, ack: { ok: boolean }) => {
          if (err || !ack?.ok) return done(false);
          // Heartbeats spread over the interval, as real agents that started at different times would.
          const first = setTimeout(
            () => {
              const beat = () =>
                socket.emit('heartbeat', { at: new Date().toISOString(), outboxDepth: 0 }, () => undefined);
              beat();
              const t = setInterval(beat, heartbeatSeconds * 1000);
              t.unref();
              timers.push(t);
            },
            Math.random() * heartbeatSeconds * 1000,
          );
          first.unref();
          timers.push(first);
          done(true);
        });
    });
    socket.on(
      'job:dispatch',
      (envelope: { payload: { jobId: string; requestId: string } }, ack: (r: unknown) => void) => {
        const at = Date.now();
        ack({ ok: true, accepted: true });
        send({
          type: 'job',
          agentId,
          jobId: envelope.payload.jobId,
          requestId: envelope.payload.requestId,
          at,
        });
        socket.emit(
          'job:event',
          {
            type: 'result',
            jobId: envelope.payload.jobId,
            seq: 1,
            at: new Date().toISOString(),
            result: { status: 'succeeded', output: '', finishedAt: new Date().toISOString() },
          },
          // Reported so the benchmark can tell a lost result (the real agent would retry it) from a slow one.
          (res: { ok: boolean; error?: { code: string } }) =>
            send({
              type: 'result-ack',
              requestId: envelope.payload.requestId,
              ok: res?.ok === true,
              code: res?.error?.code,
            }),
        );
      },
    );
  });
}

process.on('message', (cmd: Cmd) => {
  if (cmd.type === 'stop') {
    for (const t of timers) clearTimeout(t);
    for (const s of sockets) s.close();
    setTimeout(() => process.exit(0), 200);
    return;
  }
  void (async () => {
    let ok = 0;
    let failed = 0;
    let next = 0;
    const worker = async () => {
      while (next < cmd.agents.length) {
        const a = cmd.agents[next++]!;
        const key = createPrivateKey(a.privateKeyPem);
        // Like the real agent: a refused or timed-out connection is retried after a short backoff.
        let good = false;
        for (let attempt = 0; attempt < 3 && !good; attempt++) {
          if (attempt) await new Promise((r) => setTimeout(r, 500 * attempt));
          good = await connectOne(cmd.url, a.agentId, key, cmd.heartbeatSeconds);
        }
        if (good) ok++;
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: cmd.parallel }, worker));
    send({ type: 'connected', ok, failed });
  })();
});
process.on('disconnect', () => process.exit(0));
