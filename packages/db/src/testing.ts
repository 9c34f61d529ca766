/**
 * Test helpers: throwaway, migrated databases of either kind. Only ever drops what it created.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openDatabase, type Database, type DatabaseKind } from './index';

/** Both kinds, for parametrised tests: `for (const kind of DATABASE_KINDS) describe(kind, ...)`. */
export const DATABASE_KINDS: readonly DatabaseKind[] = ['pglite', 'postgres'];

/** The test PostgreSQL server of ENVIRONMENT.md (trust auth, user postgres). */
export const DEFAULT_ADMIN_URL = 'postgresql://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase extends Database {
  /** PostgreSQL URL of the created database, or the PGlite data directory. */
  location: string;
  /** Closes the connection and drops the database / removes the directory this helper created. */
  cleanup(): Promise<void>;
}

/**
 * Creates a uniquely named PostgreSQL database (`pyreach_test_<random>`) on the test server, or a PGlite data
 * directory under the OS temp dir, migrates it and opens it.
 */
export async function createTestDatabase(
  kind: DatabaseKind,
  opts: { adminUrl?: string; poolSize?: number } = {},
): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const dir = await mkdtemp(path.join(tmpdir(), 'pyreach-pglite-'));
    const db = await openDatabase({ dataDir: dir });
    return {
      ...db,
      location: dir,
      async cleanup() {
        await db.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const adminUrl = opts.adminUrl ?? DEFAULT_ADMIN_URL;
  const name = `pyreach_test_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE "${name}"`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let db: Database;
  try {
    db = await openDatabase({ url: url.toString(), poolSize: opts.poolSize ?? 4 });
  } catch (err) {
    await dropDatabase(adminUrl, name);
    throw err;
  }
  return {
    ...db,
    location: url.toString(),
    async cleanup() {
      await db.close();
      await dropDatabase(adminUrl, name);
    },
  };
}

async function withAdmin<T>(adminUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^pyreach_test_[0-9a-f]{12}$/.test(name)) throw new Error(`refusing to drop ${name}`);
  await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}
