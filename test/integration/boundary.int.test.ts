/**
 * The HTTP boundary of the real server process, on PGlite and PostgreSQL, played as the attacker: calls from
 * another origin or site, non-JSON bodies, and a sweep over the whole route table with malformed input (NUL in
 * strings, deep nesting, out-of-range cursors, wrong methods, unknown routes) — every answer a JSON 4xx naming
 * the field, never a 500. Plus code counted in UTF-8 bytes, CSV formula cells, unusable approver roles and the
 * security headers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { routes as table, type RouteSpec } from '@pyreach/protocol/routes';
import { ApiClient, type ApiResult } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';

const routes = Object.entries(table) as [string, RouteSpec][];
const concrete = (path: string) => path.replace(/\{[^}]+\}/g, 'zz_missing');

/** JSON text nesting `levels` objects (as text: JSON.stringify itself would overflow on the deepest). */
const deep = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

function assertJson4xx(r: ApiResult, what: string): { code: string; message: string } {
  assert.ok(
    r.status >= 400 && r.status < 500,
    `${what}: expected a 4xx, got ${r.status} ${JSON.stringify(r.body)}`,
  );
  assert.ok(!r.body.ok, what);
  assert.notEqual(r.body.error.code, 'NOT_JSON', `${what}: answer is not JSON: ${r.body.error.message}`);
  return r.body.error;
}

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`HTTP boundary (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient;
    let operator: ApiClient;

    before(async () => {
      cp = await startControlPlane(kind);
      admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
      operator = await ApiClient.signIn(cp.baseUrl, USERS.operator);
    });
    after(async () => {
      await cp?.cleanup();
    });

    const goodRequest = {
      kind: 'custom',
      scriptId: null,
      code: 'print(1)',
      targets: { kind: 'explicit', processes: [] },
      reason: 'boundary test',
    };

    it('refuses cookie-authenticated writes from another origin, another site or without an Origin', async () => {
      const other = `http://127.0.0.1:${cp.port + 1}`;
      const cases: [string, Record<string, string>][] = [
        ['another origin (port)', { origin: other }],
        ['another host of the same site', { origin: `http://localhost:${cp.port}` }],
        ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site' }],
        ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
      ];
      for (const [what, headers] of cases) {
        const r = await admin.request('POST', '/api/join-tokens', { labels: {} }, { headers });
        assert.equal(r.status, 403, what);
        assert.equal(!r.body.ok && r.body.error.code, 'CROSS_ORIGIN', what);
      }
      // No Origin at all (a script with a stolen cookie, or an old browser): refused too.
      const res = await fetch(`${cp.baseUrl}/api/join-tokens`, {
        method: 'POST',
        headers: { cookie: admin.cookie!, 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(res.status, 403);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'CROSS_ORIGIN');
      // Nothing was written: no join token exists.
      const agents = await admin.ok(admin.get<{ agents: unknown[] }>('/api/agents'));
      assert.equal(agents.agents.length, 0);
      // Reads stay open to links from elsewhere (GET changes nothing).
      const me = await admin.request('GET', '/api/me', undefined, { headers: { origin: other } });
      assert.equal(me.status, 200);
    });

    it('refuses bodies that are not application/json (a cross-site form or text/plain fetch)', async () => {
      for (const type of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
      ]) {
        const r = await operator.request('POST', '/api/requests', undefined, {
          raw: JSON.stringify(goodRequest),
          headers: { 'content-type': type },
        });
        assert.equal(r.status, 415, type);
        assert.equal(!r.body.ok && r.body.error.code, 'UNSUPPORTED_MEDIA_TYPE', type);
      }
      const res = await fetch(`${cp.baseUrl}/api/requests`, {
        method: 'POST',
        headers: { cookie: operator.cookie!, origin: cp.baseUrl },
        body: JSON.stringify(goodRequest),
      });
      // fetch labels a string body text/plain itself.
      assert.equal(res.status, 415);
      const list = await operator.ok(operator.get<{ requests: unknown[] }>('/api/requests'));
      assert.equal(list.requests.length, 0);
    });

    it('answers NUL, deep nesting and an out-of-range cursor with a 400 naming the field', async () => {
      const nulReason = await operator.post('/api/requests', { ...goodRequest, reason: 'why\u0000not' });
      const e1 = assertJson4xx(nulReason, 'NUL in reason');
      assert.equal(e1.code, 'VALIDATION');
      assert.match(e1.message, /body\.reason: contains a NUL/);
      const nulCode = await operator.post('/api/requests', { ...goodRequest, code: 'print(1)\u0000' });
      assert.match(assertJson4xx(nulCode, 'NUL in code').message, /body\.code: contains a NUL/);
      const nested = await operator.request('POST', '/api/requests', undefined, {
        raw: JSON.stringify({ ...goodRequest, params: {} }).replace(
          '"params":{}',
          `"params":{"x":${deep(5000)}}`,
        ),
      });
      assert.match(
        assertJson4xx(nested, 'deep params').message,
        /body\.params\.x(\.a)*: nested deeper than 32/,
      );
      const cursor = await admin.get('/api/audit?cursor=9999999999999999999');
      assert.match(assertJson4xx(cursor, 'cursor').message, /query\.cursor: cursor is past the largest/);
      const nulQuery = await admin.get('/api/audit?text=a%00b');
      assert.match(assertJson4xx(nulQuery, 'NUL in query').message, /query\.text: contains a NUL/);
      const list = await operator.ok(operator.get<{ requests: unknown[] }>('/api/requests'));
      assert.equal(list.requests.length, 0);
    });

    it('answers unknown /api routes with JSON 404 and wrong methods with JSON 405 and Allow', async () => {
      for (const path of ['/api/nope', '/api/requests/x/y/z', '/api/users/a/b']) {
        const r = await admin.get(path);
        assert.equal(r.status, 404, path);
        assert.equal(!r.body.ok && r.body.error.code, 'NOT_FOUND', path);
        assert.match(r.headers.get('content-type') ?? '', /application\/json/);
      }
      const r = await admin.request('DELETE', '/api/requests');
      assert.equal(r.status, 405);
      assert.equal(!r.body.ok && r.body.error.code, 'METHOD_NOT_ALLOWED');
      assert.equal(r.headers.get('allow'), 'GET, POST');
      assert.match(!r.body.ok ? r.body.error.message : '', /use GET or POST/);
    });

    it('sweeps the route table: malformed input on every route is a JSON 4xx, never a 500', async () => {
      const hostileBodies: string[] = [
        JSON.stringify({ reason: 'r\u0000', code: 'c\u0000', name: 'n\u0000', comment: 'x\u0000' }),
        `{"params":${deep(200)},"matchLabels":${deep(200)},"labels":${deep(200)}}`,
        `[${deep(100_000)}]`,
        `${'['.repeat(400_000)}${']'.repeat(400_000)}`,
        '"a string"',
        'null',
        '{"a":',
      ];
      const hostileQueries = [
        'cursor=9999999999999999999',
        'limit=99999999999999999999',
        'text=%00',
        'from=x',
      ];
      let checked = 0;
      for (const [name, spec] of routes) {
        if (name === 'enroll') continue; // agent enrolment: public, its own checks (agent tests).
        const path = concrete(spec.path);
        if (spec.body)
          for (const body of hostileBodies) {
            const r = await admin.request(spec.method, path, undefined, { raw: body });
            assertJson4xx(r, `${name} body ${body.slice(0, 60)}`);
            checked++;
          }
        if (spec.query)
          for (const q of hostileQueries) {
            const r = await admin.request(spec.method, `${path}?${q}`, spec.body ? {} : undefined);
            assert.ok(r.status < 500, `${name}?${q}: ${r.status} ${JSON.stringify(r.body)}`);
            assert.notEqual(!r.body.ok && r.body.error.code, 'NOT_JSON', `${name}?${q}`);
            checked++;
          }
        const wrong = (['GET', 'POST', 'PATCH', 'PUT', 'DELETE'] as const).filter(
          (m) => !routes.some(([, s]) => s.path === spec.path && s.method === m),
        );
        for (const m of wrong) {
          const r = await admin.request(m, path, m === 'GET' ? undefined : {});
          assert.equal(r.status, 405, `${m} ${spec.path}`);
          assert.equal(!r.body.ok && r.body.error.code, 'METHOD_NOT_ALLOWED');
          assert.ok(r.headers.get('allow')?.includes(spec.method), `${m} ${spec.path}: Allow`);
          checked++;
        }
      }
      assert.ok(checked > 100, `only ${checked} checks ran`);
      assert.doesNotMatch(cp.logs(), /route failed/, 'no route failed unexpectedly');
    });

    it('counts code in UTF-8 bytes as the agent does: 400 KB of UTF-8 is refused at the API', async () => {
      const code = `# ${'€'.repeat(140_000)}\nprint(1)`; // 140,011 characters, 420,011 bytes
      assert.ok(code.length < 262_144);
      const r = await operator.post('/api/requests', { ...goodRequest, code });
      const e = assertJson4xx(r, 'utf-8 code');
      assert.equal(e.code, 'VALIDATION');
      assert.match(e.message, /body\.code: code is larger than 262144 bytes of UTF-8/);
    });

    it('refuses a policy whose approver roles nobody can use', async () => {
      for (const approverRoles of [['viewer'], ['operator'], ['operator', 'viewer']]) {
        const r = await admin.post('/api/policies', { name: `p-${approverRoles.join('-')}`, approverRoles });
        const e = assertJson4xx(r, `approverRoles ${approverRoles.join(',')}`);
        assert.match(e.message, /body\.approverRoles: approver roles must be roles that may review/);
      }
      const ok = await admin.post('/api/policies', { name: 'fine', approverRoles: ['approver'] });
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });

    it('neutralises formula cells in the CSV export', async () => {
      // An e-mail address may start with + or -: the sign-in event's actorName cell then starts a formula.
      const email = '-2+3@pyreach.test';
      await admin.ok(
        admin.post('/api/users', {
          email,
          name: 'formula',
          password: 'formula-password-123',
          role: 'viewer',
        }),
      );
      await ApiClient.signIn(cp.baseUrl, email, 'formula-password-123');
      const csv = await admin.text('/api/audit/export?format=csv');
      assert.equal(csv.status, 200);
      assert.ok(csv.text.includes(`,'${email},auth.sign_in,`), csv.text.slice(-800));
      for (const line of csv.text.split('\r\n'))
        for (const cell of line.split(',')) assert.doesNotMatch(cell, /^"?[=+@\t\r-]/, cell);
    });

    it('sends nosniff, referrer policy and frame refusals on every answer, and a CSP that allows nothing on /api', async () => {
      for (const path of ['/api/me', '/api/nope', '/api/health']) {
        const r = await admin.get(path);
        assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
        assert.equal(r.headers.get('referrer-policy'), 'same-origin', path);
        assert.equal(r.headers.get('x-frame-options'), 'DENY', path);
        assert.match(
          r.headers.get('content-security-policy') ?? '',
          /default-src 'none'; frame-ancestors 'none'/,
        );
      }
    });
  });
}
