/**
 * Issue 11 item 7, through the real control-plane process on PostgreSQL with separate owner and app roles, as
 * production runs: the app's credentials cannot bend the audit trail; signed checkpoints are taken on a timer
 * and on export and copied to a file and a webhook; and the owner — who can disable the triggers and
 * recompute every hash — is caught by verify when it cuts off the newest events or rewrites old ones.
 */
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  AuditCheckpoint,
  auditHash,
  verifyAuditExport,
  verifyCheckpoint,
  type AuditCheckpoint as Checkpoint,
} from '@pyreach/protocol/audit';
import { ApiClient } from '../support/api';
import { REPO_ROOT, startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { eventually } from '../support/eventually';

type Row = {
  seq: string;
  at: Date;
  actorType: string;
  actorId: string | null;
  actorName: string | null;
  action: string;
  subjectType: string | null;
  subjectId: string | null;
  data: unknown;
  prevHash: string;
  hash: string;
};

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** As the owner (the attacker of these tests): triggers off, `fn`, triggers on again. */
async function asOwnerBehindTriggers(cp: ControlPlane, fn: (c: pg.Client) => Promise<void>): Promise<void> {
  await withClient(cp.db!.ownerLocation, async (c) => {
    await c.query('BEGIN');
    await c.query('ALTER TABLE audit_event DISABLE TRIGGER USER');
    await fn(c);
    await c.query('ALTER TABLE audit_event ENABLE TRIGGER USER');
    await c.query('COMMIT');
  });
}

const events = (c: pg.Client) =>
  c
    .query<Row>('SELECT * FROM audit_event ORDER BY seq')
    .then((r) => r.rows.map((e) => ({ ...e, seq: String(e.seq) })));

async function insertRows(c: pg.Client, rows: Row[]): Promise<void> {
  for (const e of rows) {
    await c.query(
      `INSERT INTO audit_event (seq, at, "actorType", "actorId", "actorName", action, "subjectType", "subjectId", data, "prevHash", hash)
       VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)`,
      [
        e.seq,
        e.at,
        e.actorType,
        e.actorId,
        e.actorName,
        e.action,
        e.subjectType,
        e.subjectId,
        JSON.stringify(e.data),
        e.prevHash,
        e.hash,
      ],
    );
  }
}

describe('audit integrity (PostgreSQL, separate owner and app roles)', () => {
  let cp: ControlPlane;
  let hook: Server;
  const received: unknown[] = [];
  let admin: ApiClient;
  let sinkDir: string | undefined;
  let sinkFile: string;
  let keyFile: string;

  before(async () => {
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const addr = hook.address();
    const hookPort = typeof addr === 'object' && addr ? addr.port : 0;
    sinkDir = await mkdtemp(path.join(tmpdir(), 'pyreach-audit-sink-'));
    sinkFile = path.join(sinkDir, 'checkpoints.jsonl');
    cp = await startControlPlane(
      'postgres',
      {
        PYREACH_AUDIT_CHECKPOINT_INTERVAL_MS: '300',
        PYREACH_AUDIT_SINK_FILE: sinkFile,
        PYREACH_AUDIT_SINK_WEBHOOK: `http://127.0.0.1:${hookPort}/checkpoints`,
        PYREACH_AUDIT_SINK_WEBHOOK_ALLOW: '127.0.0.1',
      },
      { roles: 'separate' },
    );
    // Generated at first start in the server's data directory (the demo/test default of PYREACH_AUDIT_KEY_FILE).
    keyFile = path.join(cp.env.PYREACH_DATA_DIR!, 'keys', 'audit.pem');
    admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
  });
  after(async () => {
    await cp?.cleanup();
    await new Promise<void>((resolve) => (hook ? hook.close(() => resolve()) : resolve()));
    if (sinkDir) await rm(sinkDir, { recursive: true, force: true });
  });

  const trusted = async () => [createPublicKey(await readFile(keyFile, 'utf8'))];
  const verify = () =>
    admin.ok(
      admin.get<{
        valid: boolean;
        reason?: string;
        checkpointSeq?: string;
        brokenAt?: string;
        lastSeq?: string;
      }>('/api/audit/verify'),
    );

  it('health reports the audit as protected, and the app role is the one connected', async () => {
    const h = await new ApiClient(cp.baseUrl).get<{
      audit: { protection: string; role: string; reasons: string[] };
    }>('/api/health');
    assert.equal(h.status, 200);
    assert.ok(h.body.ok);
    assert.equal(h.body.audit.protection, 'protected');
    assert.deepEqual(h.body.audit.reasons, []);
    assert.equal(h.body.audit.role, new URL(cp.env.DATABASE_URL!).username);
  });

  it("with the app's credentials, DISABLE TRIGGER, UPDATE and DELETE on the audit tables fail", async () => {
    await withClient(cp.env.DATABASE_URL!, async (c) => {
      for (const table of ['audit_event', 'audit_checkpoint']) {
        for (const sql of [
          `ALTER TABLE ${table} DISABLE TRIGGER USER`,
          `UPDATE ${table} SET seq = seq`,
          `DELETE FROM ${table}`,
          `TRUNCATE ${table}`,
        ]) {
          await assert.rejects(c.query(sql), /permission denied|must be owner/, sql);
        }
      }
      const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_event');
      assert.ok(rows[0]!.n > 0, 'the events are still there');
    });
  });

  it('signs checkpoints on the timer and copies each to the file and the webhook sink', async () => {
    const keys = await trusted();
    const stored = await eventually('a checkpoint in the database', async () =>
      withClient(cp.env.DATABASE_URL!, async (c) => {
        const { rows } = await c.query<{ seq: string }>('SELECT seq::text FROM audit_checkpoint');
        return rows.length > 0 ? rows : null;
      }),
    );
    assert.ok(stored.length > 0);
    const fromFile = await eventually('a checkpoint in the file sink', async () => {
      const lines = (await readFile(sinkFile, 'utf8')).trim().split('\n').filter(Boolean);
      return lines.length > 0 ? lines.map((l) => AuditCheckpoint.parse(JSON.parse(l))) : null;
    });
    const fromHook = await eventually('a checkpoint at the webhook', () =>
      received.length > 0 ? received.map((r) => AuditCheckpoint.parse(r)) : null,
    );
    for (const c of [...fromFile, ...fromHook]) assert.deepEqual(verifyCheckpoint(c, keys), { ok: true });
    assert.deepEqual(fromHook[0], fromFile[0]);
    // A new event moves the head: the timer signs the new head (and only once per head).
    await ApiClient.signIn(cp.baseUrl, USERS.viewer);
    const head = await withClient(cp.env.DATABASE_URL!, async (c) => {
      const { rows } = await c.query<{ seq: string }>('SELECT max(seq)::text AS seq FROM audit_event');
      return rows[0]!.seq;
    });
    await eventually('the new head signed', () =>
      received.some((r) => AuditCheckpoint.parse(r).seq === head) ? true : null,
    );
    const v = await verify();
    assert.equal(v.valid, true);
  });

  it('an export ends with a checkpoint over its last event and verifies offline; an edited copy does not', async () => {
    const keys = await trusted();
    const res = await admin.text('/api/audit/export?format=jsonl');
    assert.equal(res.status, 200);
    const header = AuditCheckpoint.parse(JSON.parse(res.headers.get('x-pyreach-audit-checkpoint')!));
    const r = verifyAuditExport(res.text, keys);
    assert.ok(r.valid, JSON.stringify(r));
    assert.equal(r.complete, true);
    assert.deepEqual(r.checkpoint, header);
    const lines = res.text.trim().split('\n');
    assert.equal(String((JSON.parse(lines.at(-2)!) as { seq: string }).seq), header.seq);
    // Edited in place: a different action.
    const edited = res.text.replace('"action":"auth.sign_in"', '"action":"auth.sign_out"');
    assert.notEqual(edited, res.text);
    assert.equal(verifyAuditExport(edited, keys).valid, false);
    // Cut short: the newest event dropped.
    const cut = [...lines.slice(0, -2), lines.at(-1)].join('\n');
    const rc = verifyAuditExport(cut, keys);
    assert.equal(rc.valid, false);
    assert.match(!rc.valid ? rc.reason : '', /cut off/);
    // The CLI path does the same from files: exit 0 for the export, 1 for the edited copy.
    await writeFile(path.join(sinkDir!, 'export.jsonl'), res.text);
    await writeFile(path.join(sinkDir!, 'edited.jsonl'), edited);
    const cli = (file: string) =>
      spawnSync(
        path.join(REPO_ROOT, 'node_modules/.bin/tsx'),
        ['apps/web/scripts/verify-audit-export.ts', path.join(sinkDir!, file), keyFile],
        { cwd: REPO_ROOT, encoding: 'utf8' },
      );
    const good = cli('export.jsonl');
    assert.equal(good.status, 0, good.stderr);
    assert.equal((JSON.parse(good.stdout) as { valid: boolean }).valid, true);
    const bad = cli('edited.jsonl');
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /NOT verified: event \d+ does not match its hash/);
    // A checkpoint signed by another key proves nothing.
    const other = [
      createPublicKey(await readFile(path.join(cp.env.PYREACH_DATA_DIR!, 'keys', 'signing.pem'))),
    ];
    assert.match(JSON.stringify(verifyAuditExport(res.text, other)), /untrusted key/);
  });

  it('the owner cutting off the newest events is reported against the checkpoint that covered them', async () => {
    // The export leaves a checkpoint exactly at the head; then no event is written until the rows are back.
    await admin.text('/api/audit/export?format=jsonl');
    assert.equal((await verify()).valid, true);
    let removed: Row[] = [];
    await asOwnerBehindTriggers(cp, async (c) => {
      const all = await events(c);
      removed = all.slice(-3);
      await c.query('DELETE FROM audit_event WHERE seq > $1::bigint', [all.at(-4)!.seq]);
    });
    const head = removed.at(-1)!.seq;
    const v = await verify();
    assert.equal(v.valid, false);
    assert.equal(v.checkpointSeq, head);
    assert.equal(v.brokenAt, removed[0]!.seq);
    assert.match(v.reason!, /cut off/);
    assert.match(v.reason!, new RegExp(`seq ${head}`));
    // The verification recorded the cut at once (audit.verify_failed, linked to the cut chain's head): the cut
    // rows' first seq is taken, so they cannot simply be slipped back in...
    const record = await withClient(cp.db!.ownerLocation, (c) =>
      c.query<{ action: string; actorName: string }>(
        'SELECT action, "actorName" FROM audit_event WHERE seq = $1::bigint',
        [removed[0]!.seq],
      ),
    );
    assert.deepEqual(record.rows[0], { action: 'audit.verify_failed', actorName: 'audit-verifier' });
    // The chain now holds that record where the cut began (a rewrite, to a checkpoint over that seq): verified
    // again, the same cut is not a new break.
    assert.equal((await verify()).valid, false);
    const alerts = await withClient(cp.db!.ownerLocation, (c) =>
      c.query(`SELECT seq FROM audit_event WHERE action = 'audit.verify_failed'`),
    );
    assert.equal(alerts.rowCount, 1, 'one record of the cut');
    await assert.rejects(
      asOwnerBehindTriggers(cp, (c) => insertRows(c, removed)),
      /duplicate key/,
    );
    // ...only by erasing that record too, after the alert was logged (and queued for every rule listing it).
    assert.match(cp.logs(), /AUDIT CHAIN VERIFICATION FAILED/);
    await asOwnerBehindTriggers(cp, async (c) => {
      await c.query('DELETE FROM audit_event WHERE seq >= $1::bigint', [removed[0]!.seq]);
      await insertRows(c, removed);
    });
    // Restored, the chain agrees with the checkpoint again.
    assert.equal((await verify()).valid, true);
  });

  it('the owner rewriting an old event and recomputing every later hash is reported too', async () => {
    await admin.text('/api/audit/export?format=jsonl');
    let original: Row[] = [];
    let target = '';
    await asOwnerBehindTriggers(cp, async (c) => {
      original = await events(c);
      const victim = original.find((e) => e.action === 'auth.sign_in')!;
      target = victim.seq;
      // Recompute the chain from the victim on, exactly as verify does: the chain alone holds together.
      let prev = victim.prevHash;
      const rewritten: Row[] = [];
      for (const e of original.filter((r) => BigInt(r.seq) >= BigInt(target))) {
        const data = e.seq === target ? { ...(e.data as object), forged: true } : e.data;
        const row = { ...e, data, prevHash: prev };
        row.hash = auditHash(prev, {
          seq: e.seq,
          at: e.at.toISOString(),
          actorType: e.actorType,
          actorId: e.actorId,
          actorName: e.actorName,
          action: e.action,
          subjectType: e.subjectType,
          subjectId: e.subjectId,
          data,
        });
        prev = row.hash;
        rewritten.push(row);
      }
      await c.query('DELETE FROM audit_event WHERE seq >= $1::bigint', [target]);
      await insertRows(c, rewritten);
    });
    const v = await verify();
    assert.equal(v.valid, false, 'the rewrite is caught');
    assert.match(v.reason!, /rewritten/);
    assert.ok(v.checkpointSeq && BigInt(v.checkpointSeq) >= BigInt(target), JSON.stringify(v));
    // Deleting the database's checkpoints as well does not help: the file sink still has them.
    await withClient(cp.db!.ownerLocation, async (c) => {
      await c.query('BEGIN');
      await c.query('ALTER TABLE audit_checkpoint DISABLE TRIGGER USER');
      await c.query('DELETE FROM audit_checkpoint');
      await c.query('ALTER TABLE audit_checkpoint ENABLE TRIGGER USER');
      await c.query('COMMIT');
    });
    const v2 = await verify();
    assert.equal(v2.valid, false, 'caught through the file sink');
    assert.match(v2.reason!, /rewritten/);
    const fileSeqs = (await readFile(sinkFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as Checkpoint).seq);
    assert.ok(fileSeqs.includes(v2.checkpointSeq!));
  });
});

describe('audit integrity on embedded PGlite (demo)', () => {
  let cp: ControlPlane;
  before(async () => {
    cp = await startControlPlane('pglite', { PYREACH_AUDIT_CHECKPOINT_INTERVAL_MS: '300' });
  });
  after(async () => {
    await cp?.cleanup();
  });

  it('health says pglite and why that does not protect the audit; checkpoints are still signed', async () => {
    const h = await new ApiClient(cp.baseUrl).get<{
      audit: { protection: string; reasons: string[]; lastCheckpoint: { seq: string } | null };
    }>('/api/health');
    assert.ok(h.body.ok);
    assert.equal(h.body.audit.protection, 'pglite');
    assert.match(h.body.audit.reasons.join(' '), /single superuser/);
    await eventually('a checkpoint on PGlite', async () => {
      const r = await new ApiClient(cp.baseUrl).get<{ audit: { lastCheckpoint: unknown } }>('/api/health');
      return r.body.ok && r.body.audit.lastCheckpoint;
    });
  });
});
