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

export { PrismaClient, Prisma } from './generated/client';
export type {
  User,
  Session,
  Account,
  Verification,
  RateLimit,
  JoinToken,
  Agent,
  Host,
  PythonProcess,
  Policy,
  InjectionRequest,
  Review,
  Execution,
  SigningKey,
  AuditEvent,
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
  /** Disconnects Prisma and closes the pool / the embedded database. Safe to call twice. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string; when absent the embedded PGlite is used. */
  url?: string;
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
  if (opts.url) return openPostgres(opts.url, opts.poolSize ?? 10);
  return openPglite(opts.dataDir);
}

function ignoreConnectionError(): void {
  /* see the callers: the failure surfaces where it matters (the query), not as a process crash */
}

async function openPostgres(url: string, poolSize: number): Promise<Database> {
  // A dedicated connection for migrating: the advisory lock is per session.
  const client = new pg.Client({ connectionString: url });
  // Connection-level errors also reject the query in flight; the event alone must not crash the process.
  client.on('error', ignoreConnectionError);
  await client.connect();
  let migrations: MigrateResult;
  try {
    migrations = await migrate(pgConnection(client));
  } finally {
    await client.end();
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
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}
