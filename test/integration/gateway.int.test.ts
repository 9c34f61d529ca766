/**
 * The agent gateway over a real socket.io connection to the real server process, on PGlite and PostgreSQL:
 * enrolment, challenge-response, refusals, revocation, heartbeats, inventory, malformed and oversized payloads.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sign } from 'node:crypto';
import { agentAuthMessage } from '@pyreach/protocol/job';
import { AGENT_EVENT_MAX_BYTES } from '@pyreach/protocol/agent';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';
import { ConnectRefused, enroll, fakeProcess, TestAgent, type EnrolledAgent } from '../support/test-agent';

async function refusedWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectRefused, `expected ConnectRefused, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`agent gateway (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient;
    const newToken = async (body: Record<string, unknown> = {}) =>
      (await admin.ok(admin.post<{ joinToken: { token: string } }>('/api/join-tokens', body))).joinToken
        .token;
    const newAgent = async (labels: Record<string, string> = {}): Promise<EnrolledAgent> =>
      enroll(cp.baseUrl, await newToken({ labels }), { labels });

    before(async () => {
      cp = await startControlPlane(kind);
      admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
    });
    after(async () => {
      await cp?.cleanup();
    });

    it('enrols with a join token, pins the signing key and authenticates by signing the nonce', async () => {
      const agent = await newAgent({ env: 'test' });
      assert.match(agent.agentId, /^[A-Za-z0-9_-]+$/);
      assert.match(agent.signingPublicKey, /BEGIN PUBLIC KEY/);
      const ta = await TestAgent.connect(agent);
      assert.equal(ta.authAck?.ok, true);
      assert.ok(ta.challenge && ta.challenge.nonce.length >= 32);
      assert.equal((await ta.heartbeat(3)).ok, true);
      const got = await admin.ok(
        admin.get<{ agent: { status: string; outboxDepth: number; connectedHere: boolean } }>(
          `/api/agents/${agent.agentId}`,
        ),
      );
      assert.equal(got.agent.status, 'online');
      assert.equal(got.agent.outboxDepth, 3);
      assert.equal(got.agent.connectedHere, true);
      ta.close();
    });

    it('refuses a reused join token and an expired one, each with its own error', async () => {
      const token = await newToken();
      await enroll(cp.baseUrl, token);
      await assert.rejects(
        enroll(cp.baseUrl, token),
        (e: { code?: string; status?: number }) => e.code === 'JOIN_TOKEN_USED_UP' && e.status === 403,
      );
      await assert.rejects(
        enroll(cp.baseUrl, 'x'.repeat(43)),
        (e: { code?: string }) => e.code === 'UNAUTHENTICATED',
      );
      if (cp.db) {
        const expired = await newToken();
        await cp.db.prisma.joinToken.updateMany({
          where: { useCount: 0 },
          data: { expiresAt: new Date(Date.now() - 1000) },
        });
        await assert.rejects(
          enroll(cp.baseUrl, expired),
          (e: { code?: string; status?: number }) => e.code === 'JOIN_TOKEN_EXPIRED' && e.status === 401,
        );
      }
    });

    it('refuses a bad signature, an unknown agent and a bad handshake with typed errors', async () => {
      const agent = await newAgent();
      const other = await newAgent();
      await refusedWith(
        TestAgent.connect(agent, {
          prove: (ch) => ({
            nonce: ch.nonce,
            signature: sign(null, agentAuthMessage(agent.agentId, ch.nonce), other.privateKey).toString(
              'base64',
            ),
          }),
        }),
        'BAD_SIGNATURE',
      );
      await refusedWith(TestAgent.connect({ ...agent, agentId: 'ag_doesnotexist' }), 'UNKNOWN_AGENT');
      await refusedWith(TestAgent.connect({ ...agent, agentId: 'bad id!' }), 'VALIDATION');
      const audit = await admin.ok(
        admin.get<{ events: { action: string; data: { reason?: string } }[] }>(
          `/api/audit?action=agent.auth_failed&subjectId=${agent.agentId}`,
        ),
      );
      assert.ok(audit.events.some((e) => e.data.reason === 'BAD_SIGNATURE'));
    });

    it('refuses a nonce replayed from an earlier connection and a second proof on the same one', async () => {
      const agent = await newAgent();
      const first = await TestAgent.connect(agent);
      const oldNonce = first.challenge!.nonce;
      first.close();
      await refusedWith(
        TestAgent.connect(agent, {
          prove: () => ({
            nonce: oldNonce,
            signature: sign(null, agentAuthMessage(agent.agentId, oldNonce), agent.privateKey).toString(
              'base64',
            ),
          }),
        }),
        'NONCE_REPLAYED',
      );
      const ta = await TestAgent.connect(agent);
      const again = await ta.raw('auth:prove', {
        nonce: ta.challenge!.nonce,
        signature: sign(
          null,
          agentAuthMessage(agent.agentId, ta.challenge!.nonce),
          agent.privateKey,
        ).toString('base64'),
      });
      assert.equal(again.ok, false);
      assert.equal(!again.ok && again.error.code, 'NONCE_REPLAYED');
      await ta.waitForDisconnect();
    });

    it('serves nothing before the proof', async () => {
      const agent = await newAgent();
      const ta = await TestAgent.connect(agent, { prove: () => null });
      const r = await ta.heartbeat();
      assert.equal(!r.ok && r.error.code, 'UNAUTHENTICATED');
      ta.close();
    });

    it('revocation drops the live connection at once and refuses it from then on', async () => {
      const agent = await newAgent();
      const ta = await TestAgent.connect(agent);
      const gone = ta.waitForDisconnect();
      await admin.ok(admin.post(`/api/agents/${agent.agentId}/revoke`, { reason: 'decommissioned' }));
      await gone;
      assert.deepEqual(ta.revocations, ['decommissioned']);
      await refusedWith(TestAgent.connect(agent), 'AGENT_REVOKED');
    });

    it('stores inventory snapshots and deltas', async () => {
      const agent = await newAgent({ env: 'inv' });
      const ta = await TestAgent.connect(agent);
      assert.equal(
        (await ta.snapshot([fakeProcess(101), fakeProcess(102)], { env: 'inv' }, 'inv-host')).ok,
        true,
      );
      const delta = await ta.raw('inventory:delta', {
        upserted: [fakeProcess(103)],
        removed: [{ pid: 101, startTime: '100101' }],
        scannedAt: new Date().toISOString(),
      });
      assert.equal(delta.ok, true);
      const procs = await admin.ok(
        admin.get<{ processes: { pid: number }[] }>(`/api/fleet/processes?agentId=${agent.agentId}`),
      );
      assert.deepEqual(procs.processes.map((p) => p.pid).sort(), [102, 103]);
      ta.close();
    });

    it('answers a malformed or oversized payload on every event with a typed error and changes nothing', async () => {
      const agent = await newAgent({ env: 'bad' });
      const ta = await TestAgent.connect(agent);
      assert.equal((await ta.snapshot([fakeProcess(201)], { env: 'bad' })).ok, true);
      const before = await admin.ok(admin.get(`/api/fleet/processes?agentId=${agent.agentId}`));
      const malformed: Record<string, unknown> = {
        heartbeat: { at: 'yesterday', outboxDepth: -1 },
        'inventory:snapshot': { host: { hostname: '' }, processes: 'many' },
        'inventory:delta': { upserted: [{ pid: -5 }], removed: [], scannedAt: 'now' },
        'job:event': { type: 'result', jobId: 'j1', seq: 0, at: 'x' },
      };
      for (const [event, payload] of Object.entries(malformed)) {
        const r = await ta.raw(event, payload);
        assert.equal(r.ok, false, event);
        assert.equal(!r.ok && r.error.code, 'VALIDATION', event);
        assert.ok(!r.ok && r.error.message.length > 0);
      }
      for (const event of Object.keys(malformed)) {
        const limit = AGENT_EVENT_MAX_BYTES[event as keyof typeof AGENT_EVENT_MAX_BYTES];
        const r = await ta.raw(event, { padding: 'x'.repeat(limit + 1) }, 15_000);
        assert.equal(!r.ok && r.error.code, 'PAYLOAD_TOO_LARGE', event);
      }
      const unknown = await ta.raw('nope:event', {});
      assert.equal(!unknown.ok && unknown.error.code, 'UNKNOWN_EVENT');
      assert.equal(ta.connected, true, 'a bad message does not cost the connection');
      const afterwards = await admin.ok(admin.get(`/api/fleet/processes?agentId=${agent.agentId}`));
      assert.deepEqual(afterwards, before);
      // auth:prove is the one event that also ends the connection when malformed.
      const fresh = await TestAgent.connect(agent, { prove: () => null });
      const bad = await fresh.raw('auth:prove', { nonce: 'short', signature: '***' });
      assert.equal(!bad.ok && bad.error.code, 'VALIDATION');
      await fresh.waitForDisconnect();
      ta.close();
    });

    it('five agents enrol with one token limited to five; the sixth is refused as used up, and the token lists all five', async () => {
      const created = await admin.ok(
        admin.post<{ joinToken: { id: string; token: string; maxUses: number | null } }>('/api/join-tokens', {
          maxUses: 5,
          hostPattern: 'fleet-?.gw.test',
          labels: { env: 'fleet' },
          note: 'five-node pool',
        }),
      );
      assert.equal(created.joinToken.maxUses, 5);
      const token = created.joinToken.token;
      const five = await Promise.all(
        [1, 2, 3, 4, 5].map((i) => enroll(cp.baseUrl, token, { hostname: `fleet-${i}.gw.test` })),
      );
      assert.equal(new Set(five.map((a) => a.agentId)).size, 5, 'each node its own identity');
      await Promise.all(five.map(async (a) => (await TestAgent.connect(a)).close()));
      await assert.rejects(
        enroll(cp.baseUrl, token, { hostname: 'fleet-6.gw.test' }),
        (e: { code?: string; status?: number }) => e.code === 'JOIN_TOKEN_USED_UP' && e.status === 403,
      );
      const list = await admin.ok(
        admin.get<{
          joinTokens: {
            id: string;
            useCount: number;
            maxUses: number;
            status: string;
            agents: { id: string }[];
          }[];
        }>('/api/join-tokens'),
      );
      const row = list.joinTokens.find((t) => t.id === created.joinToken.id)!;
      assert.equal(row.useCount, 5);
      assert.equal(row.status, 'used_up');
      assert.deepEqual(row.agents.map((a) => a.id).sort(), five.map((a) => a.agentId).sort());
      const refused = await admin.ok(
        admin.get<{ events: { data: { reason?: string; hostname?: string } }[] }>(
          `/api/audit?action=agent.enroll_refused&subjectId=${created.joinToken.id}`,
        ),
      );
      assert.deepEqual(
        refused.events.map((e) => [e.data.reason, e.data.hostname]),
        [['JOIN_TOKEN_USED_UP', 'fleet-6.gw.test']],
      );
    });

    it('revoking a token stops enrolments; revoke-agents drops every live socket it enrolled', async () => {
      const created = await admin.ok(
        admin.post<{ joinToken: { id: string; token: string } }>('/api/join-tokens', { maxUses: null }),
      );
      const { id, token } = created.joinToken;
      const agents = await Promise.all(
        ['rv-a', 'rv-b'].map((hostname) => enroll(cp.baseUrl, token, { hostname })),
      );
      const live = await Promise.all(agents.map((a) => TestAgent.connect(a)));
      const revoked = await admin.ok(admin.del<{ joinToken: { status: string } }>(`/api/join-tokens/${id}`));
      assert.equal(revoked.joinToken.status, 'revoked');
      await assert.rejects(
        enroll(cp.baseUrl, token, { hostname: 'rv-c' }),
        (e: { code?: string }) => e.code === 'JOIN_TOKEN_REVOKED',
      );
      assert.ok(
        live.every((ta) => ta.revocations.length === 0),
        'revoking the token leaves its agents',
      );
      const gone = live.map((ta) => ta.waitForDisconnect());
      const all = await admin.ok(
        admin.post<{ revokedAgentIds: string[] }>(`/api/join-tokens/${id}/revoke-agents`, {
          reason: 'token leaked',
        }),
      );
      assert.deepEqual([...all.revokedAgentIds].sort(), agents.map((a) => a.agentId).sort());
      await Promise.all(gone);
      assert.deepEqual(
        live.map((ta) => ta.revocations),
        [['token leaked'], ['token leaked']],
      );
      await refusedWith(TestAgent.connect(agents[0]!), 'AGENT_REVOKED');
      const bad = await admin.request('POST', `/api/join-tokens/${id}/revoke-agents`, {});
      assert.equal(bad.status, 400);
    });
  });
}
