/** "Loosening", defined once (governance.ts): each way a change could let some target through with less. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { atLeastAsStrict, policyLoosening, roleWidens, type PolicyShape } from './governance';

const base: PolicyShape = {
  id: 'pol_a',
  name: 'a',
  matchLabels: { env: 'prod' },
  matchAction: {},
  priority: 10,
  requiredApprovals: 2,
  approverRoles: ['approver', 'admin'],
  allowCustomCode: false,
  approvalValidMinutes: 60,
};
const dflt: PolicyShape = {
  ...base,
  id: 'default',
  name: 'default',
  matchLabels: {},
  priority: 0,
  requiredApprovals: 1,
  allowCustomCode: true,
};
const update = (after: Partial<PolicyShape>, others = [dflt, base]) =>
  policyLoosening('policy.update', base, { ...base, ...after }, others);

test('each looser rule of a policy is a loosening, each stricter one is not', () => {
  assert.match(update({ requiredApprovals: 1 }).join(), /fewer approvals/);
  assert.match(
    update({ approverRoles: ['approver', 'admin', 'operator' as never] }).join(),
    /more approver roles/,
  );
  assert.match(update({ allowCustomCode: true }).join(), /allows custom code/);
  assert.match(update({ approvalValidMinutes: 600 }).join(), /valid longer/);
  assert.deepEqual(update({ requiredApprovals: 3 }), []);
  assert.deepEqual(update({ approverRoles: ['admin'] }), []);
  assert.deepEqual(update({ approvalValidMinutes: 5 }), []);
  assert.deepEqual(update({}), []);
});

test('a stricter policy lowered below a looser one, narrowed, or widened while loose, loosens some target', () => {
  assert.match(update({ priority: -1 }).join(), /fall to looser policy default/);
  assert.match(update({ matchLabels: { env: 'prod', tier: 'db' } }).join(), /fall to looser policy default/);
  const loose: PolicyShape = {
    ...base,
    id: 'pol_l',
    name: 'loose',
    requiredApprovals: 1,
    allowCustomCode: true,
  };
  const strict: PolicyShape = {
    ...dflt,
    id: 'pol_s',
    name: 'strict',
    matchLabels: {},
    requiredApprovals: 3,
    priority: 0,
  };
  assert.match(
    policyLoosening('policy.update', loose, { ...loose, matchLabels: {} }, [strict, loose]).join(),
    /looser than policy strict/,
  );
  // Raising a strict policy over a looser one only tightens.
  assert.deepEqual(update({ priority: 50 }), []);
});

test('a new policy loosens only where it takes over from a stricter one it overlaps', () => {
  const create = (p: Partial<PolicyShape>) =>
    policyLoosening('policy.create', null, { ...base, id: 'pol_new', name: 'new', ...p }, [dflt, base]);
  assert.match(create({ priority: 20, requiredApprovals: 1 }).join(), /looser than policy a/);
  // Below the strict one, or on hosts it can never share with it: only the default is taken over.
  assert.deepEqual(create({ priority: 5, requiredApprovals: 1, allowCustomCode: true }), []);
  assert.deepEqual(
    create({ priority: 20, matchLabels: { env: 'dev' }, requiredApprovals: 1, allowCustomCode: true }),
    [],
  );
  // Library scripts only never meets a custom-code-only policy.
  const customOnly: PolicyShape = { ...base, matchAction: { kinds: ['custom'] } };
  assert.deepEqual(
    policyLoosening(
      'policy.create',
      null,
      {
        ...base,
        id: 'pol_lib',
        name: 'lib',
        priority: 20,
        requiredApprovals: 1,
        matchAction: { kinds: ['library'] },
      },
      [dflt, customOnly],
    ).filter((r) => /policy a/.test(r)),
    [],
  );
  assert.match(create({ priority: 20, requiredApprovals: 0 }).join(), /fewer approvals/);
});

test('deleting a policy loosens when its targets fall to a looser one; deleting a looser one does not', () => {
  assert.match(policyLoosening('policy.delete', base, null, [dflt, base]).join(), /looser policy default/);
  const lax: PolicyShape = { ...dflt, id: 'pol_lax', name: 'lax', priority: 5, requiredApprovals: 0 };
  assert.deepEqual(policyLoosening('policy.delete', lax, null, [dflt, lax]), []);
  assert.ok(atLeastAsStrict(base, dflt) && !atLeastAsStrict(dflt, base));
});

test('a role change widens who may approve exactly when it is to approver or admin', () => {
  assert.equal(roleWidens('operator', 'approver'), true);
  assert.equal(roleWidens('approver', 'admin'), true);
  assert.equal(roleWidens('admin', 'approver'), true, 'a policy naming only approver now accepts them');
  assert.equal(roleWidens(null, 'admin'), true);
  assert.equal(roleWidens('admin', 'operator'), false);
  assert.equal(roleWidens('approver', 'viewer'), false);
  assert.equal(roleWidens('approver', 'approver'), false);
});
