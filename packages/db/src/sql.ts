import type { PGlite } from '@electric-sql/pglite';
import type { Client as PgClient } from 'pg';

/**
 * The little the migrator needs from a connection, implemented once for PGlite and once for `pg`.
 * Migrations run on a raw connection (not through Prisma) because they need multi-statement scripts, explicit
 * BEGIN/COMMIT and a session-level advisory lock held on one connection.
 */
export interface SqlConnection {
  /** Runs a script of one or more statements (simple-query protocol, no parameters). */
  exec(sql: string): Promise<void>;
  /** Runs one parameterised statement and returns its rows. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

export function pgliteConnection(db: PGlite): SqlConnection {
  return {
    async exec(sql) {
      await db.exec(sql);
    },
    async query<T>(sql: string, params: unknown[] = []) {
      return (await db.query<T>(sql, params)).rows;
    },
  };
}

export function pgConnection(client: PgClient): SqlConnection {
  return {
    async exec(sql) {
      await client.query(sql);
    },
    async query<T>(sql: string, params: unknown[] = []) {
      return (await client.query(sql, params)).rows as T[];
    },
  };
}
