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
import path from 'node:path';
import { openDatabase } from '@pyreach/db';
import { parseEnv } from '../src/server/env';
import { signUnsignedDeclarations } from '../src/server/services/namespace-labels';
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
    const signed = await signUnsignedDeclarations(
      db.prisma,
      {
        type: 'system',
        name: 'sign-namespace-labels',
      },
      key,
    );
    process.stdout.write(`${JSON.stringify(signed)}\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `sign-namespace-labels failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
