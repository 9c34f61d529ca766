/**
 * What every upgrade command shares: the control plane's environment (its database and
 * PYREACH_ATTESTATION_KEY_FILE, which must exist: a key minted here would sign what the control plane cannot
 * verify), the step run once against them, its answer printed as one JSON line, and a
 * non-zero exit saying which command failed.
 */
import path from 'node:path';
import { openDatabase, type PrismaClient } from '@pyreach/db';
import { parseEnv } from '../src/server/env';
import type { AttestationKey } from '../src/server/services/attest';
import { loadOrCreateSigningKey } from '../src/server/services/signing';

export function runUpgradeStep(
  name: string,
  step: (prisma: PrismaClient, key: AttestationKey) => Promise<unknown>,
): void {
  const main = async () => {
    const env = parseEnv();
    const key = await loadOrCreateSigningKey({ keyFile: env.attestationKeyFile, create: false });
    const db = await openDatabase(
      env.databaseUrl
        ? { url: env.databaseUrl, migrationUrl: env.databaseMigrationUrl }
        : { dataDir: path.join(env.dataDir, 'pglite') },
    );
    try {
      process.stdout.write(`${JSON.stringify(await step(db.prisma, key))}\n`);
    } finally {
      await db.close();
    }
  };
  main().catch((err: unknown) => {
    process.stderr.write(
      `${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
