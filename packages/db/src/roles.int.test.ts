/**
 * The audit trail against a database writer holding the application's own credentials (PostgreSQL, real roles).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './testing';

async function asRole<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const EVENT = `INSERT INTO audit_event (seq, at, "actorType", action, "prevHash", hash)
  VALUES ($1, now(), 'system', 'test.event', repeat('0', 64), $2)`;

describe('audit_event with separate owner and app roles (PostgreSQL)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('postgres', { roles: 'separate' });
  });
  after(async () => {
    await db?.cleanup();
  });

  test('the app role may insert and read audit events and use the working tables', async () => {
    await asRole(db.location, async (c) => {
      await c.query(EVENT, [1, 'a'.repeat(64)]);
      const { rows } = await c.query('SELECT count(*)::int AS n FROM audit_event');
      assert.equal(rows[0].n, 1);
      await c.query(`INSERT INTO signing_key (id, "publicKey") VALUES ('k1', 'pem')`);
      await c.query(`UPDATE signing_key SET "retiredAt" = now() WHERE id = 'k1'`);
      await c.query(`DELETE FROM signing_key WHERE id = 'k1'`);
    });
    assert.equal(db.auditProtection.protected, true, db.auditProtection.reasons.join('; '));
  });

  for (const [what, sql] of [
    ['UPDATE', `UPDATE audit_event SET action = 'forged'`],
    ['DELETE', `DELETE FROM audit_event`],
    ['TRUNCATE', `TRUNCATE audit_event`],
    ['DISABLE TRIGGER', `ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_delete`],
    ['DROP TRIGGER', `DROP TRIGGER audit_event_no_update ON audit_event`],
    ['re-create the table', `ALTER TABLE audit_event RENAME TO audit_event_old`],
  ] as const) {
    test(`the app role cannot ${what} the audit trail`, async () => {
      await asRole(db.location, async (c) => {
        await assert.rejects(c.query(sql), (err: { code?: string }) => {
          // 42501 insufficient_privilege (missing grant or not the owner); 0LP01 invalid grant operation.
          assert.ok(['42501', '0LP01'].includes(err.code ?? ''), `unexpected error ${err.code}`);
          return true;
        });
        const { rows } = await c.query(`SELECT count(*)::int AS n FROM audit_event WHERE action = 'forged'`);
        assert.equal(rows[0].n, 0);
      });
    });
  }

  test('the app role cannot grant itself what it lacks (PostgreSQL only warns) and still cannot UPDATE', async () => {
    await asRole(db.location, async (c) => {
      await c.query(`GRANT UPDATE, DELETE ON audit_event TO CURRENT_USER`);
      await assert.rejects(c.query(`UPDATE audit_event SET action = 'forged'`), { code: '42501' });
    });
  });

  test('grants are reconciled at every start: a privilege granted by hand is taken back', async () => {
    await asRole(db.ownerLocation, (c) =>
      c.query(`GRANT UPDATE, DELETE ON audit_event TO "${new URL(db.location).username}"`),
    );
    const { openDatabase } = await import('./index');
    const again = await openDatabase({ url: db.location, migrationUrl: db.ownerLocation, poolSize: 1 });
    try {
      assert.equal(again.auditProtection.protected, true, again.auditProtection.reasons.join('; '));
    } finally {
      await again.close();
    }
  });
});

describe('a runtime with only the application role (migrations run by the owner beforehand)', () => {
  test('opens an up-to-date database without CREATE rights, still protected; refuses one with pending migrations', async () => {
    const db = await createTestDatabase('postgres', { roles: 'separate', poolSize: 1 });
    try {
      const { openDatabase } = await import('./index');
      const app = await openDatabase({ url: db.location, poolSize: 1 });
      try {
        assert.deepEqual(app.migrations.applied, []);
        assert.ok(app.migrations.alreadyApplied.length > 0);
        assert.equal(app.auditProtection.protected, true, app.auditProtection.reasons.join('; '));
      } finally {
        await app.close();
      }
      // A migration not yet applied: the app role may not apply it (no CREATE), so the start fails loudly.
      await asRole(db.ownerLocation, (c) =>
        c.query(
          `DELETE FROM "_prisma_migrations" WHERE migration_name = (SELECT max(migration_name) FROM "_prisma_migrations")`,
        ),
      );
      await assert.rejects(
        openDatabase({ url: db.location, poolSize: 1 }),
        /permission denied|must be owner|already exists/,
      );
    } finally {
      await db.cleanup();
    }
  });
});

describe('audit protection report', () => {
  test('one role that owns everything is reported unprotected, saying why', async () => {
    const db = await createTestDatabase('postgres');
    try {
      assert.equal(db.auditProtection.protected, false);
      assert.match(db.auditProtection.reasons.join('\n'), /superuser|owns audit_event/);
    } finally {
      await db.cleanup();
    }
  });

  test('embedded PGlite is reported unprotected, with what protects it instead', async () => {
    const db = await createTestDatabase('pglite');
    try {
      assert.equal(db.auditProtection.protected, false);
      assert.match(db.auditProtection.reasons[0]!, /single superuser.*hash chain/);
    } finally {
      await db.cleanup();
    }
  });
});
