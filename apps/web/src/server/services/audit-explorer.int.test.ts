import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routes } from '@pyreach/protocol/routes';
import {
  appendAuditMany,
  exportAudit,
  queryAudit,
  recordAudit,
  withSubjectNames,
  type AuditFilter,
} from './audit';
import {
  describeEachDatabase,
  seedAgent,
  seedUser,
  seedPolicy,
  testKeyPair,
} from '../../../../../test/support/services';

const ATTEST = testKeyPair();

/** What the export route does with a query string: parse it with the route's schema, then stream. */
async function exported(db: Parameters<typeof exportAudit>[0], query: Record<string, string>) {
  const { format, from, to, ...rest } = routes.exportAudit.query.parse(query);
  const filter: AuditFilter = {
    ...rest,
    ...(from ? { from: new Date(from) } : {}),
    ...(to ? { to: new Date(to) } : {}),
  };
  let out = '';
  for await (const chunk of exportAudit(db, filter, format)) out += chunk;
  return out.trim().split('\n').filter(Boolean);
}

describeEachDatabase('audit explorer reads', (db) => {
  test('an export honours the free-text filter: the 5 rows on screen, not all 252', async () => {
    const { prisma } = db();
    const carol = await seedUser(prisma, 'operator', 'carol-export');
    await prisma.$transaction((tx) =>
      appendAuditMany(
        tx,
        Array.from({ length: 252 }, (_, i) => ({
          actor: carol,
          action: 'request.create',
          subjectType: 'request',
          subjectId: `r${i}`,
          data: { reason: i % 50 === 7 ? `rotate zebracorn key ${i}` : `routine ${i}` },
        })),
      ),
    );
    const screen = await queryAudit(prisma, { text: 'zebracorn', limit: 50 });
    assert.equal(screen.items.length, 5);
    const lines = await exported(prisma, { format: 'jsonl', text: 'zebracorn' });
    assert.equal(lines.length, 5);
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { seq: string }).seq).sort(),
      screen.items.map((e) => e.seq.toString()).sort(),
    );
    const csv = await exported(prisma, { format: 'csv', text: 'zebracorn', actor: 'carol-export' });
    assert.equal(csv.length, 1 + 5, 'header and the same 5 rows, every filter applied together');
    assert.equal((await exported(prisma, { format: 'jsonl', actorId: carol.id })).length, 252);
  });

  test('the actor filter takes a name or an e-mail (any case), for users and agents', async () => {
    const { prisma } = db();
    const dave = await seedUser(prisma, 'admin', 'Dave Ops');
    await recordAudit(prisma, { actor: dave, action: 'policy.update', data: { note: 'by dave' } });
    const email = `${dave.id}@example.test`;
    for (const actor of ['Dave Ops', 'dave ops', email.toUpperCase()]) {
      const page = await queryAudit(prisma, { actor });
      assert.ok(page.items.length >= 1, actor);
      assert.ok(
        page.items.every((e) => e.actorId === dave.id),
        actor,
      );
    }
    const agent = await seedAgent(prisma, dave, { hostname: 'vm-actor' });
    await recordAudit(prisma, {
      actor: { type: 'agent', id: agent.id, name: agent.name },
      action: 'agent.connect',
    });
    const byAgent = await queryAudit(prisma, { actor: agent.name });
    assert.ok(byAgent.items.some((e) => e.actorId === agent.id && e.action === 'agent.connect'));
    assert.equal((await queryAudit(prisma, { actor: 'nobody-at-all' })).items.length, 0);
  });

  test('subjects come back with their current names, resolved for a page in one query', async () => {
    const { prisma } = db();
    const erin = await seedUser(prisma, 'admin', 'Erin');
    const agent = await seedAgent(prisma, erin, { hostname: 'vm-names' });
    const policy = await seedPolicy(
      prisma,
      {
        name: 'prod-two-person',
        matchLabels: { env: 'prod' },
      },
      ATTEST,
    );
    await recordAudit(prisma, { actor: erin, action: 'user.role', subjectType: 'user', subjectId: erin.id });
    await recordAudit(prisma, { actor: erin, action: 'x.agent', subjectType: 'agent', subjectId: agent.id });
    await recordAudit(prisma, {
      actor: erin,
      action: 'x.policy',
      subjectType: 'policy',
      subjectId: policy.id,
    });
    await recordAudit(prisma, {
      actor: erin,
      action: 'x.gone',
      subjectType: 'request',
      subjectId: 'req_gone',
    });
    const page = await queryAudit(prisma, { actorId: erin.id, limit: 500 });
    let queries = 0;
    const counting = new Proxy(prisma, {
      get(target, prop, recv) {
        if (prop === '$queryRawUnsafe') queries++;
        return Reflect.get(target, prop, recv);
      },
    });
    const named = await withSubjectNames(counting, page.items);
    assert.equal(queries, 1, 'one query for the whole page');
    const by = (action: string) => named.find((e) => e.action === action)?.subjectName;
    assert.equal(by('user.role'), `Erin <${erin.id}@example.test>`);
    assert.equal(by('x.agent'), agent.name);
    assert.equal(by('x.policy'), 'prod-two-person');
    assert.equal(by('x.gone'), null);
  });
});
