import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SYSTEM } from './actor';
import {
  appendAudit,
  csvField,
  exportAudit,
  queryAudit,
  recordAudit,
  toPrefixQuery,
  verifyAuditChain,
} from './audit';
import { describeEachDatabase, seedUser } from '../../../../../test/support/services';

describeEachDatabase('audit', (db) => {
  test('events chain from seq 1 with each prevHash equal to the previous hash, and the chain verifies', async () => {
    const { prisma } = db();
    const alice = await seedUser(prisma, 'operator', 'alice');
    const a = await recordAudit(prisma, {
      actor: alice,
      action: 'request.create',
      subjectType: 'request',
      subjectId: 'r1',
      data: { b: 2, a: [1, 'x'] },
    });
    const b = await recordAudit(prisma, {
      actor: SYSTEM,
      action: 'request.dispatch',
      subjectType: 'request',
      subjectId: 'r1',
    });
    assert.equal(a.seq, 1n);
    assert.equal(a.prevHash, '0'.repeat(64));
    assert.equal(b.seq, 2n);
    assert.equal(b.prevHash, a.hash);
    assert.deepEqual(await verifyAuditChain(prisma), { ok: true, count: 2, lastSeq: 2n });
  });

  test('concurrent writers never fork the chain: sequences stay contiguous and the chain verifies', async () => {
    const { prisma } = db();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        recordAudit(prisma, { actor: SYSTEM, action: 'test.concurrent', data: { i } }),
      ),
    );
    const res = await verifyAuditChain(prisma, { batchSize: 7 });
    assert.equal(res.ok, true);
    assert.equal(res.ok && res.count, 22);
  });

  test('an event is rolled back with the transaction that wrote it', async () => {
    const { prisma } = db();
    await assert.rejects(
      prisma.$transaction(async (tx) => {
        await appendAudit(tx, { actor: SYSTEM, action: 'test.rolled_back' });
        throw new Error('abort');
      }),
      /abort/,
    );
    assert.equal(await prisma.auditEvent.count({ where: { action: 'test.rolled_back' } }), 0);
    assert.equal((await verifyAuditChain(prisma)).ok, true);
  });

  test('filters by actor, action, subject, time and text return newest first with a working cursor', async () => {
    const { prisma } = db();
    const bob = await seedUser(prisma, 'approver', 'Bob Builder');
    for (let i = 0; i < 5; i++) {
      await recordAudit(prisma, {
        actor: bob,
        action: 'review.approve',
        subjectType: 'request',
        subjectId: `rq${i}`,
        data: { comment: `looks fine ${i}` },
      });
    }
    const byActor = await queryAudit(prisma, { actorId: bob.id, limit: 2 });
    assert.equal(byActor.items.length, 2);
    assert.ok(byActor.items[0]!.seq > byActor.items[1]!.seq);
    assert.ok(byActor.nextCursor);
    const page2 = await queryAudit(prisma, { actorId: bob.id, limit: 2, cursor: byActor.nextCursor! });
    const page3 = await queryAudit(prisma, { actorId: bob.id, limit: 2, cursor: page2.nextCursor! });
    assert.deepEqual(
      [...byActor.items, ...page2.items, ...page3.items].map((e) => e.subjectId),
      ['rq4', 'rq3', 'rq2', 'rq1', 'rq0'],
    );
    assert.equal(page3.nextCursor, null);

    assert.equal((await queryAudit(prisma, { action: 'review.approve' })).items.length, 5);
    assert.deepEqual(
      (await queryAudit(prisma, { subjectType: 'request', subjectId: 'rq3' })).items.map((e) => e.actorName),
      ['Bob Builder'],
    );
    assert.deepEqual(
      (await queryAudit(prisma, { text: 'fine 2' })).items.map((e) => e.subjectId),
      ['rq2'],
    );
    assert.equal((await queryAudit(prisma, { text: 'build' })).items.length, 5, 'prefix of the actor name');

    const all = await prisma.auditEvent.findMany({ orderBy: { seq: 'asc' } });
    const mid = all[Math.floor(all.length / 2)]!;
    const later = await queryAudit(prisma, { from: mid.at, limit: 500 });
    assert.ok(later.items.every((e) => e.at >= mid.at));
    assert.ok(later.items.some((e) => e.seq === mid.seq));
    const before = await queryAudit(prisma, { to: mid.at, limit: 500 });
    assert.ok(before.items.every((e) => e.at < mid.at));
    assert.equal(later.items.length + before.items.length, all.length);
    assert.deepEqual((await queryAudit(prisma, { from: new Date(Date.now() + 86_400_000) })).items, []);
  });

  test('exports stream every matching event oldest first as JSON Lines and as escaped CSV', async () => {
    const { prisma } = db();
    await recordAudit(prisma, {
      actor: SYSTEM,
      action: 'test.csv',
      subjectId: 'needs, "quoting"',
      data: { note: 'line1\nline2' },
    });
    let jsonl = '';
    for await (const chunk of exportAudit(prisma, {}, 'jsonl', { batchSize: 4 })) jsonl += chunk;
    const lines = jsonl
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    const total = await prisma.auditEvent.count();
    assert.equal(lines.length, total);
    assert.deepEqual(
      lines.map((l) => Number(l.seq)),
      Array.from({ length: total }, (_, i) => i + 1),
    );
    let csv = '';
    for await (const chunk of exportAudit(prisma, { action: 'test.csv' }, 'csv')) csv += chunk;
    assert.match(
      csv,
      /^seq,at,actorType,actorId,actorName,action,subjectType,subjectId,data,prevHash,hash\r\n/,
    );
    assert.ok(csv.includes('"needs, ""quoting"""'));
    assert.ok(csv.includes(String.raw`"{""note"":""line1\nline2""}"`));
    assert.equal(csvField('two\nlines'), '"two\nlines"');
    assert.equal(csvField('plain'), 'plain');
    assert.equal(csvField(null), '');
  });

  test('text search ignores query syntax characters instead of failing', () => {
    assert.equal(toPrefixQuery(`a' | b & !c`), `'a':* & 'b':* & 'c':*`);
    assert.equal(toPrefixQuery('  '), null);
  });

  test('an UPDATE made with the trigger disabled is found at the sequence number it changed', async (t) => {
    const { prisma, kind } = db();
    const victim = await prisma.auditEvent.findFirstOrThrow({
      where: { action: 'review.approve' },
      orderBy: { seq: 'asc' },
    });
    // As a superuser with the guard switched off — exactly the attack the hash chain exists for.
    await prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe('ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_update');
      await tx.$executeRawUnsafe(
        `UPDATE audit_event SET data = '{"comment":"approved by nobody"}' WHERE seq = ${victim.seq}`,
      );
      await tx.$executeRawUnsafe('ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_update');
    });
    const res = await verifyAuditChain(prisma, { batchSize: 3 });
    assert.equal(res.ok, false, kind);
    assert.equal(!res.ok && res.brokenAt, victim.seq);
    assert.match(!res.ok ? res.reason : '', /altered/);
    t.diagnostic(`broken at ${victim.seq}`);
  });
});
