/**
 * npm run -w apps/web seed — creates the users of DEFAULT_SEED_USERS (or PYREACH_SEED_USERS, a JSON array of
 * {email,name,role}) with password PYREACH_SEED_PASSWORD. Idempotent. Refused in production unless
 * PYREACH_SEED_FORCE=1. Exits non-zero on any failure.
 */
import path from 'node:path';
import { openDatabase } from '@pyreach/db';
import { createAuth } from '../src/server/auth';
import { parseEnv } from '../src/server/env';
import { createLogger } from '../src/server/logger';
import { DEFAULT_SEED_USERS, SeedUsers, seedAccount } from '../src/server/seed';

async function main(): Promise<number> {
  const env = parseEnv();
  const log = createLogger({ level: env.logLevel === 'debug' ? 'info' : env.logLevel, pretty: false });
  if (env.nodeEnv === 'production' && !env.seedForce) {
    log.error('refusing to seed a production database; set PYREACH_SEED_FORCE=1 if you really mean it');
    return 3;
  }
  const password = env.seedPassword;
  const users = env.seedUsersJson ? SeedUsers.parse(JSON.parse(env.seedUsersJson)) : DEFAULT_SEED_USERS;
  const db = await openDatabase(
    env.databaseUrl
      ? { url: env.databaseUrl, migrationUrl: env.databaseMigrationUrl, poolSize: 2 }
      : { dataDir: path.join(env.dataDir, 'pglite') },
  );
  try {
    const auth = createAuth({ env, prisma: db.prisma, log });
    for (const u of users) {
      const r = await seedAccount({ auth, db }, { ...u, password });
      log.info({ email: u.email, role: u.role, created: r.created }, 'seeded user');
    }
  } finally {
    await db.close();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`seed failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
