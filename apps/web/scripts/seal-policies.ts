/**
 * The upgrade step of migration 20261208000000 (the policy seal): run once, right after migrating, with the
 * control plane's environment (its database and PYREACH_ATTESTATION_KEY_FILE):
 *
 *   npm run -w apps/web seal-policies
 *
 * Seals the policy set exactly as it is (audited `policy.seal`); until then an install whose policies were ever
 * changed decides nothing by them (filing and dispatch refuse, POLICY_DENIED). Also the way back after a refusal
 * for an untrusted set, once an admin has checked the policies (GET /api/policies) against the audit trail's
 * policy events: whoever runs this vouches for them. Prints what it sealed as one JSON line.
 */
import { policyOf } from '../src/server/services/policy';
import { sealPolicySet } from '../src/server/services/policy-seal';
import { runUpgradeStep } from './upgrade-step';

runUpgradeStep('seal-policies', (prisma, key) =>
  sealPolicySet(prisma, { type: 'system', name: 'seal-policies' }, key, policyOf),
);
