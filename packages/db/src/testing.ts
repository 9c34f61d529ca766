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
  /** PostgreSQL URL of the created database (as the app role), or the PGlite data directory. */
  location: string;
  /** With `roles: 'separate'`: the owner's URL (migrations); otherwise the same as `location`. */
  ownerLocation: string;
  /** Closes the connection and drops the database / removes the directory this helper created. */
  cleanup(): Promise<void>;
}

/**
 * Creates a uniquely named PostgreSQL database (`pyreach_test_<random>`) on the test server, or a PGlite data
 * directory under the OS temp dir, migrates it and opens it.
 */
export async function createTestDatabase(
  kind: DatabaseKind,
  opts: {
    adminUrl?: string;
    poolSize?: number;
    /**
     * PostgreSQL only. `'separate'`: the database is owned by a new owner role that runs the migrations, and
     * the returned client connects as a new app role (INSERT/SELECT only on the audit), as production runs.
     * Default `'single'`: one role (the admin's) does everything.
     */
    roles?: 'single' | 'separate';
  } = {},
): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const dir = await mkdtemp(path.join(tmpdir(), 'pyreach-pglite-'));
    const db = await openDatabase({ dataDir: dir });
    return {
      ...db,
      location: dir,
      ownerLocation: dir,
      async cleanup() {
        await db.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const adminUrl = opts.adminUrl ?? DEFAULT_ADMIN_URL;
  const name = `pyreach_test_${randomBytes(6).toString('hex')}`;
  const separate = opts.roles === 'separate';
  const ownerRole = `${name}_owner`;
  const appRole = `${name}_app`;
  await withAdmin(adminUrl, async (c) => {
    if (separate) {
      await c.query(`CREATE ROLE "${ownerRole}" LOGIN`);
      await c.query(`CREATE ROLE "${appRole}" LOGIN`);
      await c.query(`CREATE DATABASE "${name}" OWNER "${ownerRole}"`);
      // PostgreSQL 15: only the owner may create in the public schema; hand it to the owner role.
      await withAdmin(urlOf(adminUrl, name), (d) => d.query(`ALTER SCHEMA public OWNER TO "${ownerRole}"`));
    } else await c.query(`CREATE DATABASE "${name}"`);
  });
  const url = urlOf(adminUrl, name, separate ? appRole : undefined);
  const ownerUrl = separate ? urlOf(adminUrl, name, ownerRole) : url;
  const drop = async (): Promise<void> => {
    await dropDatabase(adminUrl, name);
    if (separate)
      await withAdmin(adminUrl, (c) => c.query(`DROP ROLE IF EXISTS "${appRole}", "${ownerRole}"`));
  };
  let db: Database;
  try {
    db = await openDatabase({ url, migrationUrl: ownerUrl, poolSize: opts.poolSize ?? 4 });
  } catch (err) {
    await drop();
    throw err;
  }
  return {
    ...db,
    location: url,
    ownerLocation: ownerUrl,
    async cleanup() {
      await db.close();
      await drop();
    },
  };
}

function urlOf(adminUrl: string, database: string, user?: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  if (user) url.username = user;
  return url.toString();
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
