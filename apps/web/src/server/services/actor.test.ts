import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ACTIONS, ROLES, assertCan, can, requireUser, type Action, type Role } from './actor';
import { AppError, toFailure } from './errors';

/** The whole permission matrix, written out so a change to PERMISSIONS is a visible change here. */
const EXPECTED: Record<Role, readonly Action[]> = {
  viewer: ['fleet:read', 'request:read', 'audit:read', 'policy:read'],
  operator: [
    'fleet:read',
    'request:read',
    'request:create',
    'request:cancel',
    'audit:read',
    'policy:read',
    'process:inspect',
    // Restore now of a change that undoes itself: the service narrows operators to their own requests.
    'request:restore',
  ],
  approver: [
    'fleet:read',
    'request:read',
    'request:review',
    'audit:read',
    'audit:export',
    'policy:read',
    'process:inspect',
    'request:restore',
  ],
  admin: [...ACTIONS],
};

for (const role of ROLES) {
  for (const action of ACTIONS) {
    const allowed = EXPECTED[role].includes(action);
    test(`a ${role} ${allowed ? 'may' : 'may not'} ${action}`, () => {
      assert.equal(can(role, action), allowed);
      const actor = { type: 'user' as const, id: 'u1', name: 'someone', role };
      if (allowed) assert.equal(assertCan(actor, action), actor);
      else
        assert.throws(
          () => assertCan(actor, action),
          (e: unknown) => e instanceof AppError && e.code === 'FORBIDDEN',
        );
    });
  }
}

test('the system actor may do everything and an agent may do none of the user actions', () => {
  for (const action of ACTIONS) {
    assert.doesNotThrow(() => assertCan({ type: 'system', name: 'control-plane' }, action));
    assert.throws(() => assertCan({ type: 'agent', id: 'a', name: 'h' }, action), /may not/);
  }
  assert.throws(() => requireUser({ type: 'system', name: 'x' }, 'request:create'), /only people/);
});

test('an AppError becomes a Failure carrying its code and user-safe message, anything else becomes INTERNAL', () => {
  const err = new AppError('SELF_APPROVAL', 'user u1 tried to approve request r1', {
    userMessage: 'you cannot approve your own request',
  });
  assert.equal(err.status, 403);
  assert.deepEqual(toFailure(err), {
    ok: false,
    error: { code: 'SELF_APPROVAL', message: 'you cannot approve your own request' },
  });
  assert.deepEqual(toFailure(new Error('secret detail')), {
    ok: false,
    error: { code: 'INTERNAL', message: 'internal error' },
  });
});
