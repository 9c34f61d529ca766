/**
 * @pyreach/db — the one place that knows how to reach the database. Apps import the Prisma client and its
 * types from here, never from @prisma/client.
 */
import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/client';
import { migrate, type MigrateResult } from './migrate';
import { pgConnection, pgliteConnection } from './sql';
import { auditProtection, grantAppRole, type AuditProtection } from './roles';

export { PrismaClient, Prisma } from './generated/client';
export type {
  User,
  Session,
  Account,
  Verification,
  RateLimit,
  JoinToken,
  ServiceAccount,
  ApiToken,
  Agent,
  Host,
  PythonProcess,
  Policy,
  InjectionRequest,
  Review,
  Execution,
  SigningKey,
  AuditEvent,
  AuditCheckpoint,
  NotificationRule,
  NotificationOutbox,
  GovernanceChange,
  BreakGlassGrant,
  RestoreRun,
} from './generated/client';
export {
  migrate,
  loadMigrations,
  MigrationError,
  MIGRATIONS_DIR,
  type Migration,
  type MigrateResult,
} from './migrate';
export type { SqlConnection } from './sql';
export { APPEND_ONLY_TABLES, auditProtection, grantAppRole, type AuditProtection } from './roles';

import type { Prisma } from './generated/client';

/** A transaction handle as passed to `prisma.$transaction(async (tx) => ...)`. */
export type Tx = Prisma.TransactionClient;
/** Anything services can run queries on: the client itself or an open transaction. */
export type Db = PrismaClient | Tx;

export type DatabaseKind = 'pglite' | 'postgres';

export interface Database {
  prisma: PrismaClient;
  kind: DatabaseKind;
  /** What the migrator did while opening. */
  migrations: MigrateResult;
  /** Whether the connected role could rewrite the audit trail (see roles.ts); checked once at open. */
  auditProtection: AuditProtection;
  /** Disconnects Prisma and closes the pool / the embedded database. Safe to call twice. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string; when absent the embedded PGlite is used. */
  url?: string;
  /**
   * PostgreSQL connection string of the role that owns the schema and runs migrations. When given (and a
   * different role from `url`'s), the app's role gets only INSERT and SELECT on the append-only tables.
   * When absent, `url`'s role migrates and owns everything (one role: the audit is not protected from it).
   */
  migrationUrl?: string;
  /** PGlite data directory (created if missing); the caller chooses, e.g. `./data/pglite`. Omit for in-memory. */
  dataDir?: string;
  /** Max connections of the PostgreSQL pool (default 10). */
  poolSize?: number;
}

/**
 * Opens PostgreSQL (when `url` is given) or embedded PGlite, applies pending migrations (see {@link migrate}:
 * idempotent, one transaction per migration, advisory-locked, throws on any problem) and returns a ready
 * Prisma client.
 *
 * PGlite is a single connection: the adapter runs each interactive `$transaction` inside PGlite's own
 * transaction mutex, so concurrent transactions are serialised rather than interleaved (tested in
 * packages/db). Keep transactions short on PGlite — they block every other query while open.
 */
export async function openDatabase(opts: OpenDatabaseOptions = {}): Promise<Database> {
  if (opts.url) return openPostgres(opts.url, opts.migrationUrl ?? opts.url, opts.poolSize ?? 10);
  return openPglite(opts.dataDir);
}

function ignoreConnectionError(): void {
  /* see the callers: the failure surfaces where it matters (the query), not as a process crash */
}

async function openPostgres(url: string, migrationUrl: string, poolSize: number): Promise<Database> {
  // A dedicated connection for migrating (as the owner): the advisory lock is per session.
  const owner = new pg.Client({ connectionString: migrationUrl });
  const app = migrationUrl === url ? owner : new pg.Client({ connectionString: url });
  // Connection-level errors also reject the query in flight; the event alone must not crash the process.
  owner.on('error', ignoreConnectionError);
  app.on('error', ignoreConnectionError);
  let migrations: MigrateResult;
  let protection: AuditProtection;
  try {
    await owner.connect();
    if (app !== owner) await app.connect();
    migrations = await migrate(pgConnection(owner));
    const [who] = (await app.query<{ app: string; owner: string }>('SELECT current_user AS app')).rows;
    const [own] = (await owner.query<{ owner: string }>('SELECT current_user AS owner')).rows;
    if (who && own && who.app !== own.owner) await grantAppRole(pgConnection(owner), who.app);
    protection = await auditProtection(pgConnection(app));
  } finally {
    await owner.end().catch(() => undefined);
    if (app !== owner) await app.end().catch(() => undefined);
  }
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  // An idle connection that the server drops (restart, failover, an admin terminating it) is removed from the
  // pool and the next query opens a new one. The adapter listens for that only until $disconnect; a drop
  // arriving while the pool is ending (seen in tests: DROP DATABASE ... WITH (FORCE) right after close())
  // was raised as an uncaught exception. Ours stays for the pool's whole life.
  pool.on('error', ignoreConnectionError);
  pool.on('connect', (c) => c.on('error', ignoreConnectionError));
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  let closed = false;
  return {
    prisma,
    kind: 'postgres',
    migrations,
    auditProtection: protection,
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

async function openPglite(dataDir: string | undefined): Promise<Database> {
  if (dataDir) await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const pglite = dataDir ? new PGlite(dataDir) : new PGlite();
  await pglite.waitReady;
  let migrations: MigrateResult;
  try {
    migrations = await migrate(pgliteConnection(pglite));
  } catch (err) {
    await pglite.close();
    throw err;
  }
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) });
  let closed = false;
  return {
    prisma,
    kind: 'pglite',
    migrations,
    auditProtection: {
      protected: false,
      role: 'postgres',
      reasons: [
        'embedded PGlite has a single superuser role: anyone who can write its data directory can rewrite the audit trail; the hash chain and signed checkpoints detect it, they do not prevent it (use PostgreSQL with separate owner and app roles in production)',
      ],
    },
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
