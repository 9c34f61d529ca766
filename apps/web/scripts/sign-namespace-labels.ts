/**
 * The upgrade step of migration 20261207020000 (signed namespace declarations): run once, right after migrating,
 * with the control plane's environment (its database and PYREACH_ATTESTATION_KEY_FILE):
 *
 *   npm run -w apps/web sign-namespace-labels
 *
 * Signs the current namespace declaration of every join token and agent that has no signature yet (rows from
 * before signing), audited `namespace_labels.sign_unsigned`; until then their processes in a namespace are not
 * priced (refused). Prints what it signed as one JSON line. Review the declarations first (GET /api/join-tokens,
 * GET /api/agents): whoever runs this vouches for them.
 */
import { signUnsignedDeclarations } from '../src/server/services/namespace-labels';
import { runUpgradeStep } from './upgrade-step';

runUpgradeStep('sign-namespace-labels', (prisma, key) =>
  signUnsignedDeclarations(prisma, { type: 'system', name: 'sign-namespace-labels' }, key),
);
