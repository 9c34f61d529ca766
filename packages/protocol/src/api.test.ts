import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentErrorCode } from './agent';
import { CreateRequest, PERMISSIONS, PolicyInput, ROLES, Review, Targets, UpdateRequest, can } from './api';
import { ApiFailure, ErrorCode, httpStatusOf, isRetryable } from './errors';
import { routes } from './routes';

describe('error codes', () => {
  it('include every code the /agents namespace answers with', () => {
    for (const c of AgentErrorCode.options) assert.ok(ErrorCode.options.includes(c), c);
  });
  it('map each code to one HTTP status', () => {
    assert.equal(httpStatusOf('VALIDATION'), 400);
    assert.equal(httpStatusOf('SELF_APPROVAL'), 403);
    assert.equal(httpStatusOf('PAYLOAD_TOO_LARGE'), 413);
    assert.equal(httpStatusOf('INTERNAL'), 500);
  });
  it('say which failures are worth sending again, and that unknown codes are not', () => {
    assert.equal(isRetryable('SHUTTING_DOWN'), true);
    assert.equal(isRetryable('FORBIDDEN'), false);
    assert.equal(isRetryable('TIMEOUT'), false, 'nothing sends it');
  });
  it('refuse an error body whose code the control plane never sends', () => {
    assert.equal(ApiFailure.safeParse({ ok: false, error: { code: 'NOPE', message: 'x' } }).success, false);
    assert.equal(
      ApiFailure.safeParse({ ok: false, error: { code: 'CONFLICT', message: 'x' } }).success,
      true,
    );
  });
});

describe('permissions', () => {
  it('name only known roles, and refuse unknown roles everything', () => {
    for (const roles of Object.values(PERMISSIONS)) for (const r of roles) assert.ok(ROLES.includes(r));
    assert.equal(can('root', 'fleet:read'), false);
    assert.equal(can('admin', 'policy:manage'), true);
    assert.equal(can('viewer', 'request:create'), false);
  });
});

describe('request shapes', () => {
  const targets = { type: 'processes', processes: [{ agentId: 'ag_1', pid: 4, startTime: '9' }] } as const;

  it('fill the defaults approvers see (rollout of one, default job options, a selector matching any process)', () => {
    const r = CreateRequest.parse({ kind: 'custom', code: 'print(1)', targets, reason: 'because' });
    assert.deepEqual(r.rollout, { concurrency: 1, maxFailures: 1 });
    assert.equal(r.options.budgetSeconds, 30);
    assert.deepEqual(Targets.parse({ type: 'selector', labels: { env: 'prod' } }), {
      type: 'selector',
      labels: { env: 'prod' },
      process: {},
    });
  });

  it('refuse a custom request without code, a library request without a script and unknown fields', () => {
    const noCode = CreateRequest.safeParse({ kind: 'custom', targets, reason: 'because' });
    assert.equal(noCode.success, false);
    assert.deepEqual(noCode.error?.issues[0]?.path, ['code']);
    const noScript = CreateRequest.safeParse({ kind: 'library', targets, reason: 'because' });
    assert.deepEqual(noScript.error?.issues[0]?.path, ['scriptId']);
    assert.equal(UpdateRequest.safeParse({ state: 'approved' }).success, false);
    assert.equal(
      Targets.safeParse({ ...targets, processes: [{ ...targets.processes[0], uid: 0 }] }).success,
      false,
      'an explicit target is exactly agent, pid, start time and thread',
    );
  });

  it('refuse a policy that needs approvals but names no one who may give them', () => {
    const r = PolicyInput.safeParse({ name: 'x', requiredApprovals: 1, approverRoles: [] });
    assert.equal(r.success, false);
    assert.match(r.error?.issues[0]?.message ?? '', /approver role/);
    assert.equal(PolicyInput.safeParse({ name: 'x', requiredApprovals: 0, approverRoles: [] }).success, true);
  });
});

describe('reviews', () => {
  it('a rejection needs a comment, named as the failing field; an approval does not', () => {
    for (const comment of [undefined, '', '   ']) {
      const r = Review.safeParse({ decision: 'reject', ...(comment === undefined ? {} : { comment }) });
      assert.equal(r.success, false);
      assert.deepEqual(
        r.error?.issues.map((i) => i.path),
        [['comment']],
      );
    }
    assert.ok(Review.safeParse({ decision: 'reject', comment: 'wrong logger' }).success);
    assert.ok(Review.safeParse({ decision: 'approve' }).success);
  });
});

describe('the route table', () => {
  it('gives every route a unique method and path, and every JSON route a response shape', () => {
    const seen = new Set<string>();
    for (const [name, spec] of Object.entries(routes)) {
      const key = `${spec.method} ${spec.path}`;
      assert.ok(!seen.has(key), `${name}: ${key} twice`);
      seen.add(key);
      const documentOrStream = name === 'openapi' || 'produces' in spec;
      assert.equal('response' in spec, !documentOrStream, `${name} response shape`);
    }
  });
});
