/**
 * The typed client against a real HTTP server that answers what a test tells it to: a valid answer comes back
 * parsed and typed, a failure as the ApiError it carries, and an answer that does not match the route's
 * response schema is an error (BAD_RESPONSE), never a cast.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApiError, call } from './call';

interface Seen {
  method: string;
  url: string;
  body: string;
}

describe('the typed API client', () => {
  let server: Server;
  let baseUrl = '';
  let answer: { status: number; body: string } = { status: 200, body: '{}' };
  const seen: Seen[] = [];

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', body });
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(answer.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const agent = {
    id: 'ag_1',
    name: 'web-1',
    labels: { env: 'prod' },
    version: '0.1.0',
    status: 'online',
    lastSeenAt: '2026-01-01T00:00:00.000Z',
    connectedAt: null,
    outboxDepth: 0,
    outboxOldestAgeSeconds: null,
    backlog: false,
    revokedAt: null,
    revokedReason: null,
    enrolledAt: '2026-01-01T00:00:00.000Z',
    connectedHere: true,
  };

  it('builds the path, query and body from the route table and returns the parsed answer', async () => {
    answer = { status: 200, body: JSON.stringify({ ok: true, agent: { ...agent, publicKey: 'dropped' } }) };
    const r = await call('getAgent', { params: { id: 'ag_1' } }, { baseUrl });
    assert.equal(r.agent.status, 'online');
    assert.equal('publicKey' in r.agent, false, 'what the schema does not name is not passed on');
    assert.deepEqual(seen.at(-1), { method: 'GET', url: '/api/agents/ag_1', body: '' });

    answer = { status: 201, body: JSON.stringify({ ok: true, deleted: 'pol_1', change: null }) };
    await call('deletePolicy', { params: { id: 'a b/c' } }, { baseUrl });
    assert.equal(seen.at(-1)!.url, '/api/policies/a%20b%2Fc', 'path parameters are encoded');

    answer = { status: 200, body: JSON.stringify({ ok: true, requests: [], nextCursor: null }) };
    await call('listRequests', { query: { state: 'pending', limit: 5 } }, { baseUrl });
    assert.equal(seen.at(-1)!.url, '/api/requests?state=pending&limit=5');

    answer = {
      status: 200,
      body: JSON.stringify({ ok: true, users: { u_1: { name: 'Ann', role: 'approver' } } }),
    };
    const names = await call('uiNames', { body: { ids: ['u_1'] } }, { baseUrl });
    assert.equal(names.users.u_1?.role, 'approver');
    assert.deepEqual(JSON.parse(seen.at(-1)!.body), { ids: ['u_1'] });
    assert.equal(seen.at(-1)!.method, 'POST');
  });

  it('refuses an answer that does not match the route’s response schema', async () => {
    answer = { status: 200, body: JSON.stringify({ ok: true, agent: { ...agent, status: 'sleeping' } }) };
    await assert.rejects(call('getAgent', { params: { id: 'ag_1' } }, { baseUrl }), (e: unknown) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.code, 'BAD_RESPONSE');
      assert.match(e.message, /agent\.status/);
      return true;
    });
    answer = { status: 200, body: JSON.stringify({ ok: true, agents: [{ ...agent, lastSeenAt: 7 }] }) };
    await assert.rejects(call('listAgents', {}, { baseUrl }), { code: 'BAD_RESPONSE' });
    answer = { status: 200, body: 'not json' };
    await assert.rejects(call('listAgents', {}, { baseUrl }), { code: 'BAD_RESPONSE' });
  });

  it('turns the one error shape into an ApiError with its code, message and status', async () => {
    answer = {
      status: 403,
      body: JSON.stringify({
        ok: false,
        error: { code: 'SELF_APPROVAL', message: 'you cannot review your own request' },
      }),
    };
    await assert.rejects(
      call('reviewRequest', { params: { id: 'req_1' }, body: { decision: 'approve' } }, { baseUrl }),
      (e: unknown) =>
        e instanceof ApiError &&
        e.status === 403 &&
        e.code === 'SELF_APPROVAL' &&
        e.message === 'you cannot review your own request',
    );
  });

  it('does not take an error body it cannot read, or a code the server never sends, at its word', async () => {
    answer = { status: 500, body: '<html>proxy error</html>' };
    await assert.rejects(call('listAgents', {}, { baseUrl }), { code: 'BAD_RESPONSE', status: 500 });
    answer = { status: 400, body: JSON.stringify({ ok: false, error: { code: 'NOPE', message: 'x' } }) };
    await assert.rejects(call('listAgents', {}, { baseUrl }), { code: 'BAD_RESPONSE', status: 400 });
  });

  it('tells the caller when the session ended (401 UNAUTHENTICATED) before throwing', async () => {
    answer = {
      status: 401,
      body: JSON.stringify({ ok: false, error: { code: 'UNAUTHENTICATED', message: 'sign in first' } }),
    };
    let told = 0;
    await assert.rejects(call('listAgents', {}, { baseUrl, onUnauthenticated: () => told++ }), {
      code: 'UNAUTHENTICATED',
    });
    assert.equal(told, 1);
  });

  it('says NETWORK when the server cannot be reached', async () => {
    await assert.rejects(call('listAgents', {}, { baseUrl: 'http://127.0.0.1:1' }), { code: 'NETWORK' });
  });
});
