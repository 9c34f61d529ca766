/**
 * Used by `npm run demo` (scripts/demo.ts) before the control plane starts — the embedded database belongs to
 * one process at a time. Seeds the demo's admin, operator and approver with fresh random passwords (an existing
 * user keeps its password: it was shown on the first run) and, with --join-token, creates a one-time join token
 * for the local agent. Prints one JSON line: { users: [{ email, role, password|null }], token|null }.
 * Refused in production unless PYREACH_SEED_FORCE=1, like the seed command.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { openDatabase } from '@pyreach/db';
import { createAuth } from '../src/server/auth';
import { parseEnv } from '../src/server/env';
import { createLogger } from '../src/server/logger';
import { seedAccount } from '../src/server/seed';
import { createJoinToken } from '../src/server/services/agents';
import { loadOrCreateSigningKey } from '../src/server/services/signing';

const DEMO_USERS = [
  { email: 'admin@pyreach.local', name: 'Demo Admin', role: 'admin' },
  { email: 'operator@pyreach.local', name: 'Demo Operator', role: 'operator' },
  { email: 'approver@pyreach.local', name: 'Demo Approver', role: 'approver' },
] as const;

async function main(): Promise<void> {
  const env = parseEnv();
  if (env.nodeEnv === 'production' && !env.seedForce && !process.argv.includes('--demo')) {
    throw new Error('refusing to seed outside the demo; pass --demo (scripts/demo.ts does)');
  }
  const log = createLogger({ level: 'warn', pretty: false });
  const db = await openDatabase(
    env.databaseUrl
      ? { url: env.databaseUrl, migrationUrl: env.databaseMigrationUrl }
      : { dataDir: path.join(env.dataDir, 'pglite') },
  );
  try {
    const auth = createAuth({ env, prisma: db.prisma, log });
    const users: { email: string; role: string; password: string | null }[] = [];
    let admin: { id: string; name: string } | null = null;
    for (const u of DEMO_USERS) {
      const password = randomBytes(12).toString('base64url');
      const r = await seedAccount({ auth, db }, { ...u, password });
      if (u.role === 'admin') admin = { id: r.id, name: u.name };
      users.push({ email: u.email, role: u.role, password: r.created ? password : null });
    }
    let token: string | null = null;
    if (process.argv.includes('--join-token') && admin) {
      const created = await createJoinToken(
        db.prisma,
        { type: 'user', id: admin.id, name: admin.name, role: 'admin' },
        { labels: { env: 'demo' }, ttlMinutes: 30, note: 'npm run demo: local agent' },
        new Date(),
        // The control plane's attestation key (created here on a first run, like it would be at boot): the token's
        // namespace declaration is signed, else no process of its agent in a namespace would be priced.
        await loadOrCreateSigningKey({ keyFile: env.attestationKeyFile }),
      );
      token = created.token;
    }
    process.stdout.write(`${JSON.stringify({ users, token })}\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `demo seed failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
