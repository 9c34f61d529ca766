/**
 * npm run -w apps/web migrate — applies pending migrations as the owner role (DATABASE_MIGRATION_URL) and
 * grants the application role (DATABASE_URL) what it needs (only INSERT and SELECT on the audit trail), then
 * exits. Run by the Kubernetes init container, so the runtime container holds only the application role's
 * URL: a compromised control plane cannot rewrite the audit trail nor change the schema. Exits non-zero on any
 * failure (the pod does not start).
 */
import { openDatabase } from '@pyreach/db';
import { parseMigrationEnv } from '../src/server/env';

async function main(): Promise<number> {
  const env = parseMigrationEnv();
  const db = await openDatabase({
    url: env.databaseUrl,
    migrationUrl: env.databaseMigrationUrl,
    poolSize: 1,
  });
  try {
    console.log(
      JSON.stringify({
        msg: 'migrations done',
        applied: db.migrations.applied,
        alreadyApplied: db.migrations.alreadyApplied.length,
        auditProtection: db.auditProtection.protected ? 'protected' : db.auditProtection.reasons,
      }),
    );
    return 0;
  } finally {
    await db.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
