import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { SqlConnection } from './sql';

/** prisma/migrations of this repository. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../prisma/migrations', import.meta.url));

/**
 * Session-level advisory lock key held while migrating, so replicas starting together migrate one at a time
 * (the second waits, then finds nothing left to do). Any constant works; this one spells "pyreach\0".
 */
export const MIGRATION_LOCK_KEY = 0x7079726561636800n;

export interface Migration {
  name: string;
  sql: string;
  /** SHA-256 hex of the file's bytes — what Prisma stores in `_prisma_migrations.checksum`. */
  checksum: string;
}

export class MigrationError extends Error {
  constructor(
    readonly migration: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`migration ${migration}: ${message}`, options);
    this.name = 'MigrationError';
  }
}

/** Reads `<dir>/<timestamp>_<name>/migration.sql` in name order (Prisma's folder format). */
export async function loadMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory() && /^\d{14}_[A-Za-z0-9_]+$/.test(e.name))
    .map((e) => e.name)
    .sort();
  const out: Migration[] = [];
  for (const name of names) {
    const bytes = await readFile(path.join(dir, name, 'migration.sql'));
    out.push({
      name,
      sql: bytes.toString('utf8'),
      checksum: createHash('sha256').update(bytes).digest('hex'),
    });
  }
  return out;
}

// Same shape as the table `prisma migrate` creates, so `prisma migrate status/deploy` read our bookkeeping.
const BOOKKEEPING = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

interface AppliedRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | string | null;
  rolled_back_at: Date | string | null;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

/**
 * Applies every pending migration, each in its own transaction together with its `_prisma_migrations` row,
 * under a session advisory lock. Idempotent. Refuses (throws {@link MigrationError}) when a recorded migration
 * failed earlier, was edited after being applied, or is unknown to this code (the database is newer) — it
 * never logs and carries on.
 */
export async function migrate(conn: SqlConnection, opts: { dir?: string } = {}): Promise<MigrateResult> {
  const migrations = await loadMigrations(opts.dir);
  await conn.query('SELECT pg_advisory_lock($1::bigint) IS NULL AS locked', [MIGRATION_LOCK_KEY.toString()]);
  try {
    // Created only when missing: an application role that may not CREATE in the schema (a runtime whose
    // migrations an init container ran as the owner) then opens an up-to-date database without error.
    const [book] = await conn.query<{ exists: boolean }>(
      `SELECT to_regclass('"_prisma_migrations"') IS NOT NULL AS "exists"`,
    );
    if (!book?.exists) await conn.exec(BOOKKEEPING);
    const rows = await conn.query<AppliedRow>(
      'SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY started_at',
    );
    const done = new Map<string, AppliedRow>();
    for (const row of rows) {
      if (row.rolled_back_at !== null) continue;
      if (row.finished_at === null) {
        throw new MigrationError(
          row.migration_name,
          'is recorded as started but not finished; resolve it by hand before starting',
        );
      }
      done.set(row.migration_name, row);
    }
    const known = new Set(migrations.map((m) => m.name));
    for (const name of done.keys()) {
      if (!known.has(name)) {
        throw new MigrationError(
          name,
          'is applied in the database but missing from prisma/migrations (is this code older than the database?)',
        );
      }
    }
    const result: MigrateResult = { applied: [], alreadyApplied: [] };
    for (const m of migrations) {
      const prior = done.get(m.name);
      if (prior) {
        if (prior.checksum !== m.checksum) {
          throw new MigrationError(
            m.name,
            `was modified after it was applied (checksum ${prior.checksum} in the database, ${m.checksum} on disk)`,
          );
        }
        result.alreadyApplied.push(m.name);
        continue;
      }
      await conn.exec('BEGIN');
      try {
        await conn.exec(m.sql);
        await conn.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
           VALUES ($1, $2, $3, now(), clock_timestamp(), 1)`,
          [randomUUID(), m.checksum, m.name],
        );
        await conn.exec('COMMIT');
      } catch (err) {
        await conn.exec('ROLLBACK').catch(() => undefined);
        throw new MigrationError(m.name, `failed and was rolled back: ${(err as Error).message}`, {
          cause: err,
        });
      }
      result.applied.push(m.name);
    }
    return result;
  } finally {
    await conn.query('SELECT pg_advisory_unlock($1::bigint) AS unlocked', [MIGRATION_LOCK_KEY.toString()]);
  }
}
