/**
 * Service accounts and API tokens over HTTP against the real control plane, on PGlite and PostgreSQL: an admin
 * creates an account and a token (shown once), the token works as `Authorization: Bearer` on the routes its role
 * allows and on the /ui socket, is refused on the rest, never reviews, is audited as the service account with
 * the token's id, and once revoked is refused (its socket dropped); forged tokens are refused by code.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io as ioClient, type Socket } from 'socket.io-client';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { enroll, fakeProcess, TestAgent } from '../support/test-agent';

type Json = Record<string, unknown>;

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`API tokens (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient, approver: ApiClient;
    let agent: TestAgent;
    const sockets: Socket[] = [];

    const bearer = (token: string) => {
      const c = new ApiClient(cp.baseUrl);
      const request = c.request.bind(c);
      c.request = (method, path, body, opts = {}) =>
        request(method, path, body, {
          ...opts,
          headers: { authorization: `Bearer ${token}`, ...opts.headers },
        });
      return c;
    };
    const newToken = async (role: string, name: string) => {
      const sa = await admin.ok(
        admin.post<{ serviceAccount: { id: string; ownerId: string } }>('/api/service-accounts', {
          name,
          role,
        }),
      );
      const t = await admin.ok(
        admin.post<{ token: string; tokenId: string; expiresAt: string }>(
          `/api/service-accounts/${sa.serviceAccount.id}/tokens`,
          { ttlDays: 7 },
        ),
      );
      return { sa: sa.serviceAccount, ...t };
    };
    const uiSocket = (auth: Json) => {
      const s = ioClient(`${cp.baseUrl}/ui`, {
        transports: ['websocket'],
        auth,
        reconnection: false,
        forceNew: true,
      });
      sockets.push(s);
      return new Promise<Socket>((resolve, reject) => {
        s.once('connect', () => resolve(s));
        s.once('connect_error', (err: Error & { data?: { code?: string } }) =>
          reject(Object.assign(new Error(err.message), { code: err.data?.code })),
        );
      });
    };

    before(async () => {
      cp = await startControlPlane(kind);
      [admin, approver] = await Promise.all([
        ApiClient.signIn(cp.baseUrl, USERS.admin),
        ApiClient.signIn(cp.baseUrl, USERS.approver),
      ]);
      const join = await admin.ok(
        admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'tok' } }),
      );
      agent = await TestAgent.connect(await enroll(cp.baseUrl, join.joinToken.token, { hostname: 'tok-1' }), {
        onJob: () => ({ ok: true, accepted: true }),
      });
      assert.equal((await agent.snapshot([fakeProcess(401)], { env: 'tok' }, 'tok-1')).ok, true);
    });
    after(async () => {
      for (const s of sockets) s.close();
      agent?.close();
      await cp?.cleanup();
    });

    it('creates an account and a pyr_ token shown once; the token reads, files and cancels as its role allows', async () => {
      const { sa, token, tokenId, expiresAt } = await newToken('operator', 'ci-runner');
      assert.match(token, /^pyr_/);
      assert.ok(Date.parse(expiresAt) > Date.now() + 6 * 86_400_000);
      const listed = await admin.ok(admin.get<{ tokens: Json[] }>(`/api/service-accounts/${sa.id}/tokens`));
      assert.equal(listed.tokens.length, 1);
      assert.ok(!JSON.stringify(listed).includes(token.slice(-43)), 'the secret is never listed');

      const bot = bearer(token);
      const hosts = await bot.ok(bot.get<{ hosts: { hostname: string }[] }>('/api/fleet/hosts'));
      assert.ok(hosts.hosts.some((h) => h.hostname === 'tok-1'));
      const created = await bot.ok(
        bot.post<{ request: { id: string; state: string; requesterId: string } }>('/api/requests', {
          kind: 'library',
          scriptId: 'threads.dump_stacks',
          targets: {
            type: 'processes',
            processes: [{ agentId: agent.agent.agentId, pid: 401, startTime: '100401' }],
          },
          reason: 'runbook: stacks of the worker',
        }),
      );
      assert.equal(created.request.state, 'pending');
      assert.equal(created.request.requesterId, sa.ownerId, 'the owner counts as requester');

      // Never approve or reject, whatever the role.
      const review = await bot.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' });
      assert.equal(review.status, 403);
      assert.equal(!review.body.ok && review.body.error.code, 'PERSON_REQUIRED');
      // The owner (the admin who created the account) cannot approve it either: four-eyes.
      const own = await admin.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' });
      assert.equal(!own.body.ok && own.body.error.code, 'SELF_APPROVAL');

      // Outside its role: an operator token may not manage users or export the audit.
      const users = await bot.get('/api/users');
      assert.equal(users.status, 403);
      assert.equal((await bot.post('/api/service-accounts', { name: 'x', role: 'admin' })).status, 403);

      const cancelled = await bot.ok(
        bot.post<{ request: { state: string } }>(`/api/requests/${created.request.id}/cancel`, {
          reason: 'done',
        }),
      );
      assert.equal(cancelled.request.state, 'cancelled');

      const trail = await admin.ok(
        admin.get<{ events: { action: string; actorType: string; actorId: string; data: Json }[] }>(
          `/api/audit?subjectId=${created.request.id}&limit=50`,
        ),
      );
      const byToken = trail.events.filter((e) => e.actorType === 'service');
      assert.deepEqual(byToken.map((e) => e.action).sort(), ['request.cancel', 'request.create']);
      for (const e of byToken) {
        assert.equal(e.actorId, sa.id);
        assert.equal(e.data.tokenId, tokenId);
      }
      const verify = await admin.ok(admin.get<{ valid: boolean }>('/api/audit/verify'));
      assert.equal(verify.valid, true);
      const accounts = await admin.ok(
        admin.get<{ serviceAccounts: { id: string; lastUsedAt: string | null }[] }>('/api/service-accounts'),
      );
      assert.ok(accounts.serviceAccounts.find((a) => a.id === sa.id)?.lastUsedAt, 'lastUsedAt is shown');
    });

    it('an approver-role token can export the audit but still never review', async () => {
      const { token } = await newToken('approver', 'auditor-bot');
      const bot = bearer(token);
      const res = await fetch(`${cp.baseUrl}/api/audit/export?format=jsonl`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      assert.ok((await res.text()).includes('service_account.create'));
      const pending = await admin.ok(
        admin.post<{ request: { id: string } }>('/api/requests', {
          kind: 'library',
          scriptId: 'threads.dump_stacks',
          targets: {
            type: 'processes',
            processes: [{ agentId: agent.agent.agentId, pid: 401, startTime: '100401' }],
          },
          reason: 'for the approver-role token',
        }),
      );
      const review = await bot.post(`/api/requests/${pending.request.id}/reviews`, {
        decision: 'reject',
        comment: 'not from a token',
      });
      assert.equal(!review.body.ok && review.body.error.code, 'PERSON_REQUIRED');
      // A person still can.
      assert.equal(
        (
          await approver.post(`/api/requests/${pending.request.id}/reviews`, {
            decision: 'reject',
            comment: 'a reject needs its reason',
          })
        ).status,
        200,
      );
    });

    it('refuses forged, malformed and revoked tokens with their own codes, on HTTP and on the /ui socket', async () => {
      const { token, tokenId } = await newToken('viewer', 'watcher');
      const codeOf = async (c: ApiClient) => {
        const r = await c.get('/api/fleet/hosts');
        return [r.status, !r.body.ok && r.body.error.code];
      };
      assert.deepEqual(await codeOf(bearer(`${token.slice(0, -43)}${'A'.repeat(43)}`)), [
        401,
        'TOKEN_INVALID',
      ]);
      assert.deepEqual(await codeOf(bearer('pyr_guess')), [401, 'TOKEN_INVALID']);
      const malformed = await new ApiClient(cp.baseUrl).request('GET', '/api/fleet/hosts', undefined, {
        headers: { authorization: 'Basic abc' },
      });
      assert.equal(!malformed.body.ok && malformed.body.error.code, 'TOKEN_INVALID');

      const live = await uiSocket({ token });
      await assert.rejects(
        uiSocket({ token: `${token}x` }),
        (e: { code?: string }) => e.code === 'TOKEN_INVALID',
      );
      const dropped = new Promise<string>((resolve) => live.once('disconnect', (reason) => resolve(reason)));
      const revoked = await admin.ok(admin.del<{ token: { status: string } }>(`/api/tokens/${tokenId}`));
      assert.equal(revoked.token.status, 'revoked');
      assert.equal(await dropped, 'io server disconnect', 'the revoked token’s socket is dropped');
      assert.deepEqual(await codeOf(bearer(token)), [401, 'TOKEN_REVOKED']);
      await assert.rejects(uiSocket({ token }), (e: { code?: string }) => e.code === 'TOKEN_REVOKED');
      await eventually('revocation audited', async () => {
        const t = await admin.ok(
          admin.get<{ events: { action: string }[] }>('/api/audit?action=api_token.revoke'),
        );
        return t.events.length > 0;
      });
    });
  });
}
