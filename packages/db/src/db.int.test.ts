import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { cp, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { openDatabase } from './index';
import { MIGRATIONS_DIR, MigrationError, loadMigrations, migrate } from './migrate';
import { pgConnection, pgliteConnection } from './sql';
import { DATABASE_KINDS, DEFAULT_ADMIN_URL, createTestDatabase, type TestDatabase } from './testing';

const now = new Date('2026-01-01T00:00:00.000Z');
const HASH = 'a'.repeat(64);

for (const kind of DATABASE_KINDS) {
  describe(`database (${kind})`, () => {
    let db: TestDatabase;
    before(async () => {
      db = await createTestDatabase(kind);
    });
    after(() => db?.cleanup());

    test('a fresh database gets every migration recorded the way prisma migrate records them', async () => {
      const files = await loadMigrations();
      assert.deepEqual(
        db.migrations.applied,
        files.map((m) => m.name),
      );
      const rows = await db.prisma.$queryRawUnsafe<
        { migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number }[]
      >(
        'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
      );
      assert.deepEqual(
        rows.map((r) => [r.migration_name, r.checksum]),
        files.map((m) => [m.name, m.checksum]),
      );
      assert.ok(rows.every((r) => r.finished_at !== null && r.applied_steps_count === 1));
    });

    test('the default policy exists after migrating', async () => {
      const p = await db.prisma.policy.findUniqueOrThrow({ where: { name: 'default' } });
      assert.equal(p.requiredApprovals, 1);
      assert.deepEqual(p.matchLabels, {});
    });

    test('audit events can be inserted but the database refuses UPDATE, DELETE and TRUNCATE', async () => {
      await db.prisma.auditEvent.create({
        data: {
          seq: 1n,
          at: now,
          actorType: 'system',
          action: 'test.event',
          prevHash: '0'.repeat(64),
          hash: HASH,
        },
      });
      await assert.rejects(
        db.prisma.$executeRawUnsafe(`UPDATE audit_event SET action = 'x' WHERE seq = 1`),
        /append-only: UPDATE is not allowed/,
      );
      await assert.rejects(
        db.prisma.$executeRawUnsafe('DELETE FROM audit_event'),
        /append-only: DELETE is not allowed/,
      );
      await assert.rejects(
        db.prisma.$executeRawUnsafe('TRUNCATE audit_event'),
        /append-only: TRUNCATE is not allowed/,
      );
      const row = await db.prisma.auditEvent.findUniqueOrThrow({ where: { seq: 1n } });
      assert.equal(row.action, 'test.event');
    });

    test('CHECK constraints refuse unknown roles, states and decisions', async () => {
      await assert.rejects(
        db.prisma.user.create({ data: { id: 'u-bad', name: 'x', email: 'bad@x', role: 'root' } }),
        /user_role_check|check constraint/i,
      );
      await assert.rejects(
        db.prisma.$executeRawUnsafe(
          `INSERT INTO audit_event (seq, at, "actorType", action, "prevHash", hash) VALUES (2, now(), 'robot', 'a', '${HASH}', '${'b'.repeat(64)}')`,
        ),
        /audit_event_actorType_check/,
      );
      await assert.rejects(
        db.prisma.policy.create({ data: { id: 'p-bad', name: 'bad', approverRoles: ['root'] } }),
        /policy_approverRoles_check|check constraint/i,
      );
    });

    test('an interactive transaction commits all its writes or none of them', async () => {
      await assert.rejects(
        db.prisma.$transaction(async (tx) => {
          await tx.user.create({ data: { id: 'u-tx', name: 'tx', email: 'tx@x' } });
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await db.prisma.user.count({ where: { id: 'u-tx' } }), 0);
      await db.prisma.$transaction(async (tx) => {
        await tx.user.create({ data: { id: 'u-tx', name: 'tx', email: 'tx@x' } });
      });
      assert.equal(await db.prisma.user.count({ where: { id: 'u-tx' } }), 1);
    });

    test('concurrent interactive transactions do not see or interleave each other’s uncommitted writes', async () => {
      await db.prisma.user.create({ data: { id: 'u-counter', name: '0', email: 'counter@x' } });
      // Read-modify-write under FOR UPDATE: the final value proves the transactions were serialised.
      const bump = () =>
        db.prisma.$transaction(async (tx) => {
          const [row] = await tx.$queryRawUnsafe<{ name: string }[]>(
            `SELECT name FROM "user" WHERE id = 'u-counter' FOR UPDATE`,
          );
          await new Promise((r) => setTimeout(r, 5));
          await tx.user.update({ where: { id: 'u-counter' }, data: { name: String(Number(row!.name) + 1) } });
        });
      await Promise.all(Array.from({ length: 8 }, bump));
      const u = await db.prisma.user.findUniqueOrThrow({ where: { id: 'u-counter' } });
      assert.equal(u.name, '8');
    });

    test('opening an already migrated database applies nothing and changes nothing', async () => {
      const conn = kind === 'postgres' ? await pgClient(db.location) : null;
      try {
        const res = conn
          ? await migrate(pgConnection(conn))
          : await migrate({
              exec: async (sql) => void (await db.prisma.$executeRawUnsafe(sql)),
              query: async (sql, params = []) => db.prisma.$queryRawUnsafe(sql, ...params),
            });
        assert.deepEqual(res.applied, []);
        assert.equal(res.alreadyApplied.length, (await loadMigrations()).length);
      } finally {
        await conn?.end();
      }
    });
  });
}

async function pgClient(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

describe('migrator', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pyreach-mig-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function copyMigrations(to: string) {
    await cp(MIGRATIONS_DIR, to, { recursive: true });
  }

  test('a failing migration stops the start with its name and leaves no partial change behind', async () => {
    const migDir = path.join(dir, 'broken');
    await copyMigrations(migDir);
    await mkdir(path.join(migDir, '29990101000000_broken'));
    await writeFile(
      path.join(migDir, '29990101000000_broken', 'migration.sql'),
      'CREATE TABLE "half_done" (id int);\nSELECT no_such_function();\n',
    );
    const pglite = new PGlite();
    try {
      const conn = pgliteConnection(pglite);
      await assert.rejects(migrate(conn, { dir: migDir }), (err: unknown) => {
        assert.ok(err instanceof MigrationError);
        assert.equal(err.migration, '29990101000000_broken');
        assert.match(err.message, /29990101000000_broken.*no_such_function/);
        return true;
      });
      const t = await conn.query(`SELECT to_regclass('half_done') AS t`);
      assert.equal(t[0]!.t, null);
      const rows = await conn.query<{ migration_name: string }>(
        'SELECT migration_name FROM "_prisma_migrations"',
      );
      assert.ok(!rows.some((r) => r.migration_name === '29990101000000_broken'));
    } finally {
      await pglite.close();
    }
  });

  test('a migration edited after it was applied is refused with its name', async () => {
    const migDir = path.join(dir, 'edited');
    await copyMigrations(migDir);
    const pglite = new PGlite();
    try {
      const conn = pgliteConnection(pglite);
      await migrate(conn, { dir: migDir });
      const [first] = await loadMigrations(migDir);
      await writeFile(path.join(migDir, first!.name, 'migration.sql'), first!.sql + '\n-- edited\n');
      await assert.rejects(
        migrate(conn, { dir: migDir }),
        /20261123000100_auth.*modified after it was applied/,
      );
    } finally {
      await pglite.close();
    }
  });

  test('two replicas opening the same new PostgreSQL database together migrate it exactly once', async () => {
    const name = `pyreach_test_${randomBytes(6).toString('hex')}`;
    const admin = await pgClient(DEFAULT_ADMIN_URL);
    await admin.query(`CREATE DATABASE "${name}"`);
    const url = new URL(DEFAULT_ADMIN_URL);
    url.pathname = `/${name}`;
    try {
      // allSettled: if one replica fails, report its own error (not the other's, cut off by the cleanup below).
      const settled = await Promise.allSettled([
        openDatabase({ url: url.toString() }),
        openDatabase({ url: url.toString() }),
      ]);
      for (const s of settled)
        if (s.status === 'fulfilled' && settled.some((o) => o.status === 'rejected')) await s.value.close();
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
      const [a, b] = settled.map(
        (s) => (s as PromiseFulfilledResult<Awaited<ReturnType<typeof openDatabase>>>).value,
      ) as [Awaited<ReturnType<typeof openDatabase>>, Awaited<ReturnType<typeof openDatabase>>];
      try {
        const total = a.migrations.applied.length + b.migrations.applied.length;
        assert.equal(total, (await loadMigrations()).length);
        const n = await a.prisma.$queryRawUnsafe<{ n: bigint }[]>(
          'SELECT count(*) AS n FROM "_prisma_migrations"',
        );
        assert.equal(Number(n[0]!.n), total);
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    }
  });

  test('after the server drops pooled PostgreSQL connections, the next query reconnects', async () => {
    const name = `pyreach_test_${randomBytes(6).toString('hex')}`;
    const admin = await pgClient(DEFAULT_ADMIN_URL);
    await admin.query(`CREATE DATABASE "${name}"`);
    const url = new URL(DEFAULT_ADMIN_URL);
    url.pathname = `/${name}`;
    try {
      const db = await openDatabase({ url: url.toString() });
      try {
        await db.prisma.$queryRawUnsafe('SELECT 1');
        // What a server restart or an admin's pg_terminate_backend does to idle pooled connections.
        const killed = await admin.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1',
          [name],
        );
        assert.ok(killed.rowCount! >= 1);
        await new Promise((r) => setTimeout(r, 200)); // the termination reaches the idle client
        const rows = await db.prisma.$queryRawUnsafe<{ ok: number }[]>('SELECT 1 AS ok');
        assert.equal(rows[0]!.ok, 1);
      } finally {
        await db.close();
      }
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    }
  });

  test('an embedded database under a data directory survives a restart and is not migrated twice', async () => {
    const dataDir = path.join(dir, 'pglite');
    const first = await openDatabase({ dataDir });
    await first.prisma.user.create({ data: { id: 'u1', name: 'kept', email: 'kept@x' } });
    await first.close();
    const second = await openDatabase({ dataDir });
    try {
      assert.deepEqual(second.migrations.applied, []);
      assert.equal((await second.prisma.user.findUniqueOrThrow({ where: { id: 'u1' } })).name, 'kept');
    } finally {
      await second.close();
    }
  });
});
