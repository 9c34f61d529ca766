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
import path from 'node:path';
import { openDatabase } from '@pyreach/db';
import { parseEnv } from '../src/server/env';
import { policyOf } from '../src/server/services/policy';
import { sealPolicySet } from '../src/server/services/policy-seal';
import { loadOrCreateSigningKey } from '../src/server/services/signing';

async function main(): Promise<void> {
  const env = parseEnv();
  const key = await loadOrCreateSigningKey({ keyFile: env.attestationKeyFile });
  const db = await openDatabase(
    env.databaseUrl
      ? { url: env.databaseUrl, migrationUrl: env.databaseMigrationUrl }
      : { dataDir: path.join(env.dataDir, 'pglite') },
  );
  try {
    const sealed = await sealPolicySet(db.prisma, { type: 'system', name: 'seal-policies' }, key, policyOf);
    process.stdout.write(`${JSON.stringify(sealed)}\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `seal-policies failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
