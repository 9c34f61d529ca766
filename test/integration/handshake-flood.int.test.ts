/**
 * A flood of unauthenticated /agents handshakes against the real server process, on PGlite and PostgreSQL:
 * 300 bad handshakes in a burst from one source (real socket.io clients bound to 127.0.0.2) are refused —
 * RATE_LIMITED once the source's bucket is empty — and leave at most two audit rows for that source (the
 * window's first failure, then one aggregated event counting the rest), while an enrolled agent on another
 * address authenticates during the flood and the flooding address gets in again once its bucket refills.
 */
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { agentAuthMessage } from '@pyreach/protocol/job';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { enroll, generateAgentKeys, TestAgent, type EnrolledAgent } from '../support/test-agent';

const ATTACKER = '127.0.0.2';
const BURST = 20;
const WINDOW_SECONDS = 2;

interface AuditEvent {
  action: string;
  subjectType: string | null;
  subjectId: string | null;
  data: Record<string, unknown>;
}

/** One raw handshake from `localAddress`; resolves with the refusal code, or 'CHALLENGED' if it got a nonce. */
function handshake(
  baseUrl: string,
  auth: unknown,
  localAddress: string,
  answer?: (nonce: string) => { nonce: string; signature: string },
): Promise<string> {
  return new Promise((resolve) => {
    const socket = io(`${baseUrl}/agents`, {
      transports: ['websocket'],
      auth: auth as Record<string, unknown>,
      reconnection: false,
      forceNew: true,
      timeout: 10_000,
      localAddress,
    } as Parameters<typeof io>[1]);
    const done = (code: string) => {
      socket.close();
      resolve(code);
    };
    socket.once('connect_error', (err: Error & { data?: { code?: string } }) =>
      done(err.data?.code ?? `CONNECT_ERROR: ${err.message}`),
    );
    socket.once('auth:challenge', (ch: { nonce: string }) => {
      if (!answer) return done('CHALLENGED');
      socket.emit('auth:prove', answer(ch.nonce), (ack: { ok: boolean; error?: { code: string } }) =>
        done(ack.ok ? 'AUTHENTICATED' : (ack.error?.code ?? 'REFUSED')),
      );
    });
  });
}

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`agent handshake flood (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient;
    let victim: EnrolledAgent;

    before(async () => {
      cp = await startControlPlane(kind, {
        PYREACH_AGENT_HANDSHAKE_BURST: String(BURST),
        PYREACH_AGENT_HANDSHAKE_REFILL_PER_MINUTE: '600',
        PYREACH_AGENT_AUTH_AUDIT_WINDOW_SECONDS: String(WINDOW_SECONDS),
      });
      admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
      const token = await admin.ok(admin.post<{ joinToken: { token: string } }>('/api/join-tokens', {}));
      victim = await enroll(cp.baseUrl, token.joinToken.token);
    });
    after(async () => {
      await cp?.cleanup();
    });

    it('300 bad handshakes in a burst: refused, rate limited, two audit rows; the real agent still connects', async () => {
      const wrongKey = generateAgentKeys().privateKey;
      const attempts: Promise<string>[] = [];
      for (let i = 0; i < 300; i++) {
        const kindOf = i % 3;
        attempts.push(
          kindOf === 0
            ? handshake(cp.baseUrl, { v: 1, agentId: `ag_nobody${i}` }, ATTACKER)
            : kindOf === 1
              ? handshake(cp.baseUrl, { v: 1, agentId: 'not an id!' }, ATTACKER)
              : // A known agent's id with a signature by another key.
                handshake(cp.baseUrl, { v: 1, agentId: victim.agentId }, ATTACKER, (nonce) => ({
                  nonce,
                  signature: sign(null, agentAuthMessage(victim.agentId, nonce), wrongKey).toString('base64'),
                })),
        );
      }
      // The enrolled agent on its own address, in the middle of the flood.
      const legit = await TestAgent.connect(victim);
      assert.equal(legit.authAck?.ok, true, 'the enrolled agent authenticates during the flood');
      const codes = await Promise.all(attempts);
      assert.ok(
        codes.every((c) => c !== 'AUTHENTICATED' && c !== 'CHALLENGED'),
        'no bad handshake got in',
      );
      const limited = codes.filter((c) => c === 'RATE_LIMITED').length;
      assert.ok(limited >= 300 - BURST - 20, `most of the burst is refused by the limit (${limited})`);
      assert.ok(
        codes.some((c) => c === 'UNKNOWN_AGENT' || c === 'VALIDATION' || c === 'BAD_SIGNATURE'),
        'the first ones are refused for what they are',
      );
      assert.equal((await legit.heartbeat(0)).ok, true, 'the enrolled agent is served');

      // The window ends: the first failure and one aggregated event, nothing per attempt.
      const rows = await eventually(
        'the aggregated audit event of the window',
        async () => {
          const got = await admin.ok(
            admin.get<{ events: AuditEvent[] }>('/api/audit?action=agent.auth_failed&limit=500'),
          );
          return got.events.some((e) => e.data.aggregated === true && e.subjectId === ATTACKER)
            ? got.events
            : null;
        },
        15_000,
      );
      const fromAttacker = rows.filter((e) => e.data.ip === ATTACKER || e.subjectId === ATTACKER);
      assert.ok(rows.length <= 3, `bounded audit rows: ${rows.length}`);
      assert.equal(fromAttacker.length, 2, 'first failure + one aggregated event');
      const summary = fromAttacker.find((e) => e.data.aggregated === true)!;
      assert.equal(summary.subjectType, 'source');
      assert.equal(summary.data.count, 299, 'every attempt after the first is counted');
      const reasons = summary.data.reasons as Record<string, number>;
      assert.equal(
        Object.values(reasons).reduce((a, b) => a + b, 0),
        299,
      );
      assert.ok((reasons.RATE_LIMITED ?? 0) >= 250, JSON.stringify(reasons));
      assert.ok(typeof summary.data.firstAt === 'string' && typeof summary.data.lastAt === 'string');
      legit.close();

      // The bucket refills (600/min here): the flooding address is not shut out for good.
      await new Promise((r) => setTimeout(r, 1500));
      const again = await handshake(cp.baseUrl, { v: 1, agentId: victim.agentId }, ATTACKER, (nonce) => ({
        nonce,
        signature: sign(null, agentAuthMessage(victim.agentId, nonce), victim.privateKey).toString('base64'),
      }));
      assert.equal(again, 'AUTHENTICATED');
    });
  });
}
