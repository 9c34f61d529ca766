/**
 * Two database roles on PostgreSQL: the **owner** runs migrations and owns every table; the **app** role the
 * control plane connects with may read and write the working tables but may only INSERT and SELECT on the
 * append-only history. Only a table's owner (or a superuser) can `ALTER TABLE … DISABLE TRIGGER`, drop the
 * append-only triggers or truncate, so with the app's credentials alone the audit trail cannot be rewritten:
 * the triggers refuse UPDATE/DELETE, and the missing privileges refuse them before the triggers run.
 */
import type { SqlConnection } from './sql';

/** Tables whose rows are history: the app role may add and read them, never change or remove them. */
export const APPEND_ONLY_TABLES = ['audit_event', 'audit_checkpoint'] as const;

/** `"name"` with embedded quotes doubled: a role name as a SQL identifier, whatever it contains. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Reconciles the app role's privileges after migrating (idempotent; run by the owner at every start, so tables
 * that a new migration created are covered at once). Runs in one transaction.
 */
export async function grantAppRole(owner: SqlConnection, appRole: string): Promise<void> {
  const app = quoteIdent(appRole);
  const history = APPEND_ONLY_TABLES.map((t) => `"${t}"`).join(', ');
  await owner.exec('BEGIN');
  try {
    await owner.exec(
      [
        `GRANT USAGE ON SCHEMA public TO ${app}`,
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${app}`,
        `GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${app}`,
        // History: add and read only. TRUNCATE, REFERENCES and TRIGGER were never granted; revoked anyway in
        // case an operator granted them by hand.
        `REVOKE ALL ON ${history} FROM ${app}`,
        `GRANT SELECT, INSERT ON ${history} TO ${app}`,
        // The migrator's bookkeeping is the owner's business.
        `REVOKE ALL ON "_prisma_migrations" FROM ${app}`,
        `GRANT SELECT ON "_prisma_migrations" TO ${app}`,
      ].join(';\n'),
    );
    await owner.exec('COMMIT');
  } catch (err) {
    await owner.exec('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export interface AuditProtection {
  /** True when the connected role cannot change or remove audit events by any means of its own. */
  protected: boolean;
  /** The role the application is connected as. */
  role: string;
  /** Why it is not protected (empty when it is). Each says what to change. */
  reasons: string[];
}

/** What the role of `conn` could do to the append-only tables: checked at start, reported by /api/health. */
export async function auditProtection(conn: SqlConnection): Promise<AuditProtection> {
  const [me] = await conn.query<{ role: string; superuser: boolean }>(
    `SELECT current_user AS role, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user`,
  );
  const role = me?.role ?? 'unknown';
  const reasons: string[] = [];
  if (me?.superuser) reasons.push(`the application connects as ${role}, a superuser`);
  for (const table of APPEND_ONLY_TABLES) {
    const [row] = await conn.query<{
      owner: boolean;
      upd: boolean;
      del: boolean;
      trunc: boolean;
      triggers_off: number;
    }>(
      `SELECT pg_has_role(current_user, c.relowner, 'USAGE') AS owner,
              has_table_privilege(current_user, c.oid, 'UPDATE') AS upd,
              has_table_privilege(current_user, c.oid, 'DELETE') AS del,
              has_table_privilege(current_user, c.oid, 'TRUNCATE') AS trunc,
              (SELECT count(*)::int FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal
                 AND t.tgenabled = 'D') AS triggers_off
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = $1`,
      [table],
    );
    if (!row) {
      reasons.push(`${table} does not exist`);
      continue;
    }
    if (row.owner)
      reasons.push(`the application's role ${role} owns ${table} (it could disable its triggers)`);
    const may = [row.upd && 'UPDATE', row.del && 'DELETE', row.trunc && 'TRUNCATE'].filter(Boolean);
    if (may.length) reasons.push(`the application's role ${role} holds ${may.join(', ')} on ${table}`);
    if (row.triggers_off > 0)
      reasons.push(`${row.triggers_off} append-only trigger(s) on ${table} are disabled`);
  }
  return { protected: reasons.length === 0, role, reasons };
}
