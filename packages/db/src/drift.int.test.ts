/**
 * schema.prisma and prisma/migrations must describe the same database. Prisma's own differ needs the native
 * schema engine (unavailable here), so this compares Prisma's DMMF with the catalog of a freshly migrated
 * database: tables, columns (type, nullability, default), primary keys, unique and plain indexes, foreign keys.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getDMMF } from '@prisma/get-dmmf';
import { DATABASE_KINDS, createTestDatabase, type TestDatabase } from './testing';

const SCHEMA = fileURLToPath(new URL('../../../prisma/schema.prisma', import.meta.url));

/** Objects that exist only in SQL because schema.prisma cannot express them. Keep this list short. */
const SQL_ONLY_INDEXES = new Set(['audit_event_search_idx']);

type Facts = { tables: string[]; columns: string[]; indexes: string[]; foreignKeys: string[] };

const SCALAR_UDT: Record<string, string> = {
  String: 'text',
  Int: 'int4',
  BigInt: 'int8',
  Boolean: 'bool',
  DateTime: 'timestamp',
  Json: 'jsonb',
  Float: 'float8',
  Decimal: 'numeric',
};

async function expectedFromSchema(): Promise<Facts> {
  const result = await getDMMF({ datamodel: await readFile(SCHEMA, 'utf8') });
  if (!('datamodel' in result)) throw new Error(`schema.prisma does not parse: ${JSON.stringify(result)}`);
  const dmmf = result;
  const facts: Facts = { tables: [], columns: [], indexes: [], foreignKeys: [] };
  const tableOf = new Map<string, string>();
  const columnOf = new Map<string, string>();
  for (const model of dmmf.datamodel.models) {
    const table = model.dbName ?? model.name;
    tableOf.set(model.name, table);
    facts.tables.push(table);
    for (const f of model.fields) {
      if (f.kind === 'object') continue;
      const column = f.dbName ?? f.name;
      columnOf.set(`${model.name}.${f.name}`, column);
      let udt = SCALAR_UDT[f.type] ?? `?${f.type}`;
      if (f.type === 'DateTime') {
        const [native, args] = (f.nativeType ?? ['Timestamp', ['3']]) as [string, string[]];
        udt = `${native.toLowerCase()}(${args[0] ?? '3'})`;
      }
      if (f.isList) udt = `_${udt}`;
      // Prisma creates list columns without NOT NULL and @updatedAt without a database default.
      const notNull = f.isRequired && !f.isList;
      const hasDefault = f.hasDefaultValue && !f.isUpdatedAt;
      facts.columns.push(
        `${table}.${column} ${udt} ${notNull ? 'not null' : 'null'}${hasDefault ? ' default' : ''}`,
      );
    }
  }
  for (const idx of dmmf.datamodel.indexes) {
    const table = tableOf.get(idx.model)!;
    const cols = idx.fields.map((f) => columnOf.get(`${idx.model}.${f.name}`)).join(',');
    const kind = idx.type === 'id' ? 'primary' : idx.type === 'unique' ? 'unique' : 'index';
    facts.indexes.push(`${table}(${cols}) ${kind}`);
  }
  for (const model of dmmf.datamodel.models) {
    for (const f of model.fields) {
      if (f.kind !== 'object' || !f.relationFromFields?.length) continue;
      const from = f.relationFromFields.map((n) => columnOf.get(`${model.name}.${n}`)).join(',');
      const to = (f.relationToFields ?? []).map((n) => columnOf.get(`${f.type}.${n}`)).join(',');
      const onDelete = f.relationOnDelete ?? (f.isRequired ? 'Restrict' : 'SetNull');
      facts.foreignKeys.push(
        `${tableOf.get(model.name)}(${from}) -> ${tableOf.get(f.type)}(${to}) on delete ${onDelete.toLowerCase()}`,
      );
    }
  }
  return sortFacts(facts);
}

const ON_DELETE: Record<string, string> = {
  a: 'noaction',
  r: 'restrict',
  c: 'cascade',
  n: 'setnull',
  d: 'setdefault',
};

async function actualFromDatabase(db: TestDatabase): Promise<Facts> {
  const q = <T>(sql: string) => db.prisma.$queryRawUnsafe<T[]>(sql);
  const tables = await q<{ t: string }>(
    `SELECT table_name AS t FROM information_schema.tables
      WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_prisma_migrations'`,
  );
  const columns = await q<{
    t: string;
    c: string;
    udt: string;
    prec: number | null;
    nullable: string;
    def: string | null;
  }>(
    `SELECT table_name AS t, column_name AS c, udt_name AS udt, datetime_precision AS prec,
            is_nullable AS nullable, column_default AS def
       FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`,
  );
  const indexes = await q<{ t: string; name: string; cols: string | null; uniq: boolean; prim: boolean }>(
    `SELECT t.relname AS t, i.relname AS name, ix.indisunique AS uniq, ix.indisprimary AS prim,
            (SELECT string_agg(a.attname, ',' ORDER BY k.ord)
               FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS cols
       FROM pg_index ix
       JOIN pg_class t ON t.oid = ix.indrelid
       JOIN pg_class i ON i.oid = ix.indexrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'public' AND t.relname <> '_prisma_migrations'`,
  );
  const fks = await q<{ t: string; cols: string; ft: string; fcols: string; del: string }>(
    `SELECT c.conrelid::regclass::text AS t, c.confrelid::regclass::text AS ft, c.confdeltype::text AS del,
            (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols,
            (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS fcols
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
      WHERE c.contype = 'f' AND n.nspname = 'public'`,
  );
  const unquote = (s: string) => s.replace(/^"|"$/g, '');
  return sortFacts({
    tables: tables.map((r) => r.t),
    columns: columns.map((r) => {
      const udt = r.udt === 'timestamptz' || r.udt === 'timestamp' ? `${r.udt}(${r.prec})` : r.udt;
      return `${r.t}.${r.c} ${udt} ${r.nullable === 'NO' ? 'not null' : 'null'}${r.def !== null ? ' default' : ''}`;
    }),
    indexes: indexes
      .filter((r) => !SQL_ONLY_INDEXES.has(r.name))
      .map((r) => `${r.t}(${r.cols}) ${r.prim ? 'primary' : r.uniq ? 'unique' : 'index'}`),
    foreignKeys: fks.map(
      (r) =>
        `${unquote(r.t)}(${r.cols}) -> ${unquote(r.ft)}(${r.fcols}) on delete ${ON_DELETE[r.del] ?? r.del}`,
    ),
  });
}

function sortFacts(f: Facts): Facts {
  return {
    tables: [...f.tables].sort(),
    columns: [...f.columns].sort(),
    indexes: [...f.indexes].sort(),
    foreignKeys: [...f.foreignKeys].sort(),
  };
}

for (const kind of DATABASE_KINDS) {
  describe(`schema.prisma matches the migrations (${kind})`, () => {
    let db: TestDatabase;
    let expected: Facts;
    let actual: Facts;
    before(async () => {
      db = await createTestDatabase(kind);
      expected = await expectedFromSchema();
      actual = await actualFromDatabase(db);
    });
    after(() => db?.cleanup());

    test('the migrated database has exactly the tables of schema.prisma', () => {
      assert.deepEqual(actual.tables, expected.tables);
    });
    test('every column has the type, nullability and default schema.prisma declares', () => {
      assert.deepEqual(actual.columns, expected.columns);
    });
    test('primary keys, unique constraints and indexes match @id, @unique, @@unique and @@index', () => {
      assert.deepEqual(actual.indexes, expected.indexes);
    });
    test('foreign keys match the relations and their onDelete rules', () => {
      assert.deepEqual(actual.foreignKeys, expected.foreignKeys);
    });
  });
}
