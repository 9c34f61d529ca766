/**
 * The reusable-join-token migration keeps what single-use tokens recorded: an agent a used token named gets the
 * token as its `joinTokenId`, the token counts that one use, and the old columns go. Real migrations on PGlite,
 * up to the one before, then that one.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { migrate } from './migrate';
import { pgliteConnection } from './sql';

const MIGRATIONS = fileURLToPath(new URL('../../../prisma/migrations', import.meta.url));
const THIS = '20261204010000_reusable_join_tokens';

test('agents enrolled with single-use tokens keep their token after the migration, as one use', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pyreach-jt-migration-'));
  const db = new PGlite();
  try {
    for (const name of await readdir(MIGRATIONS)) {
      if (name < THIS) await cp(path.join(MIGRATIONS, name), path.join(dir, name), { recursive: true });
    }
    const conn = pgliteConnection(db);
    await migrate(conn, { dir });
    const hash = (c: string) => c.repeat(64);
    await db.exec(`
      INSERT INTO "user" ("id","name","email","updatedAt") VALUES ('u1','admin','a@example.test',now());
      INSERT INTO "agent" ("id","name","publicKey","version","updatedAt") VALUES
        ('ag1','web-1','k','0.1',now()), ('ag2','seeded','k','0.1',now());
      INSERT INTO "join_token" ("id","tokenHash","expiresAt","usedAt","usedByAgentId","createdById") VALUES
        ('jt1','${hash('a')}',now(),now(),'ag1','u1'),
        ('jt2','${hash('b')}',now() + interval '1 hour',NULL,NULL,'u1');`);
    await cp(path.join(MIGRATIONS, THIS), path.join(dir, THIS), { recursive: true });
    await migrate(conn, { dir });
    const agents = await db.query<{ id: string; joinTokenId: string | null }>(
      'SELECT "id","joinTokenId" FROM "agent" ORDER BY "id"',
    );
    assert.deepEqual(agents.rows, [
      { id: 'ag1', joinTokenId: 'jt1' },
      { id: 'ag2', joinTokenId: null },
    ]);
    const tokens = await db.query<{ id: string; useCount: number; maxUses: number; used: boolean }>(
      'SELECT "id","useCount","maxUses","lastUsedAt" IS NOT NULL AS used FROM "join_token" ORDER BY "id"',
    );
    assert.deepEqual(tokens.rows, [
      { id: 'jt1', useCount: 1, maxUses: 1, used: true },
      { id: 'jt2', useCount: 0, maxUses: 1, used: false },
    ]);
    const gone = await db.query(
      `SELECT column_name FROM information_schema.columns
       WHERE table_name = 'join_token' AND column_name IN ('usedAt','usedByAgentId')`,
    );
    assert.equal(gone.rows.length, 0);
    await assert.rejects(
      db.exec(`UPDATE "join_token" SET "useCount" = 2 WHERE "id" = 'jt1'`),
      /join_token_uses_check/,
      'the database itself refuses a use past the limit',
    );
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
});
