/**
 * The HTTP API of the real server process on PGlite and PostgreSQL: every route × every role against the
 * permission table, unauthenticated calls, malformed and oversized bodies on every route that takes one,
 * the sign-in rate limit, user management, OpenAPI, and a graceful shutdown that finishes in-flight requests.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { PERMISSIONS, ROLES, type Action } from '@pyreach/protocol/api';
import { routes as api, type RouteSpec } from '@pyreach/protocol/routes';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';

const routes = Object.entries(api) as [string, RouteSpec][];
const concrete = (path: string) => path.replace(/\{[^}]+\}/g, 'zz_missing');

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`HTTP API (${kind})`, () => {
    let cp: ControlPlane;
    const as: Record<string, ApiClient> = {};

    before(async () => {
      cp = await startControlPlane(kind);
      for (const role of ROLES) as[role] = await ApiClient.signIn(cp.baseUrl, USERS[role]);
    });
    after(async () => {
      await cp?.cleanup();
    });

    it('answers every route for every role exactly as the permission table says', async () => {
      const checked: string[] = [];
      for (const [name, spec] of routes) {
        if (typeof spec.auth !== 'object') continue;
        const action = spec.auth.action as Action;
        for (const role of ROLES) {
          const r = await as[role]!.request(spec.method, concrete(spec.path), spec.body ? {} : undefined);
          const allowed = PERMISSIONS[action].includes(role);
          if (allowed)
            assert.ok(
              r.status !== 403 && r.status !== 401,
              `${name} as ${role}: expected allowed, got ${r.status} ${JSON.stringify(r.body)}`,
            );
          else {
            assert.equal(r.status, 403, `${name} as ${role}: expected 403, got ${r.status}`);
            assert.equal(!r.body.ok && r.body.error.code, 'FORBIDDEN');
          }
          checked.push(`${name}:${role}`);
        }
      }
      assert.ok(checked.length >= 4 * 15);
    });

    it('refuses every non-public route without a session with 401 UNAUTHENTICATED', async () => {
      const anon = new ApiClient(cp.baseUrl);
      for (const [name, spec] of routes) {
        if (spec.auth === 'public') continue;
        const r = await anon.request(spec.method, concrete(spec.path), spec.body ? {} : undefined);
        assert.equal(r.status, 401, name);
        assert.equal(!r.body.ok && r.body.error.code, 'UNAUTHENTICATED', name);
      }
    });

    it('answers malformed and oversized bodies on every route with a typed error and changes nothing', async () => {
      const admin = as.admin!;
      const before = await admin.ok(admin.get<{ count: number }>('/api/audit/verify'));
      for (const [name, spec] of routes) {
        if (!spec.body) continue;
        const path = concrete(spec.path);
        const notJson = await admin.request(spec.method, path, undefined, { raw: '{"unterminated' });
        const wrongShape = await admin.request(spec.method, path, { unexpected: ['field'], v: 99 });
        const huge = await admin.request(spec.method, path, undefined, {
          raw: JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }),
        });
        for (const [what, r, status, code] of [
          ['not json', notJson, 400, 'VALIDATION'],
          ['wrong shape', wrongShape, 400, 'VALIDATION'],
          ['oversized', huge, 413, 'PAYLOAD_TOO_LARGE'],
        ] as const) {
          assert.equal(r.status, status, `${name} ${what}: ${JSON.stringify(r.body)}`);
          assert.equal(!r.body.ok && r.body.error.code, code, `${name} ${what}`);
        }
        assert.match(
          !wrongShape.body.ok ? wrongShape.body.error.message : '',
          /body/,
          `${name}: the message names the field`,
        );
      }
      const afterwards = await admin.ok(admin.get<{ count: number }>('/api/audit/verify'));
      assert.equal(afterwards.count, before.count, 'no audit event: nothing changed');
    });

    it('rate limits sign-in per IP and email, without locking out other users', async () => {
      const c = new ApiClient(cp.baseUrl);
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) codes.push((await c.signIn(USERS.operator2, 'wrong-password-123')).status);
      assert.deepEqual(codes.slice(0, 5), [401, 401, 401, 401, 401]);
      assert.equal(codes[5], 429);
      const limited = await c.signIn(USERS.operator2, 'correct-horse-battery-staple');
      assert.equal(limited.status, 429, 'even the right password waits out the window');
      assert.equal(
        (await new ApiClient(cp.baseUrl).signIn(USERS.approver2, 'correct-horse-battery-staple')).status,
        200,
      );
    });

    it('lets an admin create users and change roles, audited', async () => {
      const admin = as.admin!;
      const created = await admin.ok(
        admin.post<{ user: { id: string } }>('/api/users', {
          email: `new-${kind}@pyreach.test`,
          name: 'New',
          password: 'a-long-enough-password',
          role: 'viewer',
        }),
      );
      const dup = await admin.post('/api/users', {
        email: `new-${kind}@pyreach.test`,
        name: 'New',
        password: 'a-long-enough-password',
        role: 'viewer',
      });
      assert.equal(dup.status, 409);
      await admin.ok(admin.patch(`/api/users/${created.user.id}`, { role: 'operator' }));
      const fresh = await ApiClient.signIn(cp.baseUrl, `new-${kind}@pyreach.test`, 'a-long-enough-password');
      const me = await fresh.ok(fresh.get<{ user: { role: string }; fresh: boolean }>('/api/me'));
      assert.equal(me.user.role, 'operator');
      assert.equal(me.fresh, true);
      const events = await admin.ok(
        admin.get<{ events: { action: string }[] }>(`/api/audit?subjectId=${created.user.id}`),
      );
      assert.deepEqual(
        new Set(events.events.map((e) => e.action)),
        new Set(['user.create', 'user.role.set', 'auth.sign_in']),
      );
    });

    it('takes namespace labels at token mint and per agent, bad ones refused naming the field', async () => {
      const admin = as.admin!;
      // A label no policy looks at: nothing loosens, so it applies at once.
      const declared = { payments: { nsdecl: kind } };
      const minted = await admin.ok(
        admin.post<{ joinToken: { id: string; namespaceLabels: unknown }; change: unknown }>(
          '/api/join-tokens',
          { labels: { zone: kind }, namespaceLabels: declared },
        ),
      );
      assert.deepEqual([minted.joinToken.namespaceLabels, minted.change], [declared, null]);
      const listed = await admin.ok(
        admin.get<{ joinTokens: { id: string; namespaceLabels: unknown }[] }>('/api/join-tokens'),
      );
      assert.deepEqual(
        listed.joinTokens.find((t) => t.id === minted.joinToken.id)?.namespaceLabels,
        declared,
      );
      for (const [method, path, body] of [
        ['POST', '/api/join-tokens', { namespaceLabels: { Not_A_Namespace: { env: 'prod' } } }],
        ['PUT', '/api/agents/zz_missing/namespace-labels', { namespaceLabels: { payments: {} } }],
        [
          'PUT',
          '/api/agents/zz_missing/namespace-labels',
          { namespaceLabels: { payments: { env: 'p r o d' } } },
        ],
      ] as const) {
        const res = await admin.request(method, path, body);
        assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
        assert.ok(!res.body.ok && /namespaceLabels/.test(res.body.error.message), JSON.stringify(res.body));
      }
      const unknown = await admin.request('PUT', '/api/agents/zz_missing/namespace-labels', {
        namespaceLabels: null,
      });
      assert.equal(unknown.status, 404);
    });

    it('serves an OpenAPI 3.1 document covering every route', async () => {
      const r = await fetch(`${cp.baseUrl}/api/openapi.json`);
      const doc = (await r.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
      assert.equal(doc.openapi, '3.1.0');
      for (const [, spec] of routes)
        assert.ok(doc.paths[spec.path]?.[spec.method.toLowerCase()], `${spec.method} ${spec.path}`);
    });

    it('streams the audit export as JSON Lines and CSV', async () => {
      const jsonl = await as.approver!.text('/api/audit/export?format=jsonl');
      assert.equal(jsonl.status, 200);
      const lines = jsonl.text.trim().split('\n');
      assert.ok(lines.length > 3);
      for (const l of lines) JSON.parse(l);
      const csv = await as.admin!.text('/api/audit/export?format=csv&action=auth.sign_in');
      assert.equal(csv.status, 200);
      assert.match(csv.headers.get('content-type') ?? '', /text\/csv/);
      assert.ok(csv.text.split('\r\n').length > 2);
    });

    it('shuts down gracefully on SIGTERM: in-flight requests finish, then the process exits 0', async () => {
      const admin = as.admin!;
      // Truly in flight: each request has sent its headers and half its body before SIGTERM, and the rest
      // after. (Requests fired a moment before the signal may not have reached the server yet; refusing
      // those is correct, so timing alone cannot show anything.)
      const body = JSON.stringify({
        labels: { env: 'drain' },
        ttlMinutes: 5,
        note: 'sent across a shutdown',
      });
      const half = Math.floor(body.length / 2);
      const inflight = Array.from({ length: 4 }, () => {
        let sendRest!: () => void;
        const done = new Promise<number>((resolve, reject) => {
          const req = httpRequest(`${cp.baseUrl}/api/join-tokens`, {
            method: 'POST',
            headers: {
              cookie: admin.cookie!,
              origin: cp.baseUrl,
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
            },
          });
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.write(body.slice(0, half));
          sendRest = () => req.end(body.slice(half));
        });
        return { done, sendRest: () => sendRest() };
      });
      await new Promise((r) => setTimeout(r, 300)); // the halves have reached the server
      const exit = cp.stop();
      await new Promise((r) => setTimeout(r, 200)); // the server is draining
      for (const r of inflight) r.sendRest();
      const statuses = await Promise.all(inflight.map((r) => r.done));
      assert.deepEqual(statuses, [201, 201, 201, 201], 'requests in flight at SIGTERM are answered in full');
      assert.equal(await exit, 0);
      await cp.restart();
      const health = await new ApiClient(cp.baseUrl).get<{ db: string }>('/api/health');
      assert.equal(health.status, 200);
    });
  });
}
