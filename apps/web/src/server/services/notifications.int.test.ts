/**
 * Notifications on PGlite and PostgreSQL with a real local HTTP receiver: the SSRF guard at create and at
 * delivery, outbox rows written in the transaction of the change (and gone with its rollback), rule filters,
 * HMAC-signed deliveries, retries with backoff after the receiver fails, no redirects, leases that let one
 * worker only deliver a row, Slack's format, and the delivery log.
 */
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import type { Outcome } from './effects';
import { declareLostAgents, markConnected, markDisconnected } from './agents';
import { appendAudit, lockHead } from './audit';
import { fingerprintKeyOf, recordVerifyFailure } from './audit-alert';
import { verifyWithCheckpoints } from './audit-checkpoint';
import { AppError } from './errors';
import * as n from './notifications';
import { parseAllowList, type Resolver } from './notifications-net';
import { secretBoxFrom } from './notifications-secrets';
import * as requests from './requests';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  testKeyPair,
  seedPolicy,
} from '../../../../../test/support/services';

const ATTEST = testKeyPair();
const box = secretBoxFrom(generateKeyPairSync('ed25519').privateKey);
const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const resultOf =
  <A extends unknown[], T>(f: (...a: A) => Promise<Outcome<T>>) =>
  async (...a: A): Promise<T> =>
    (await f(...a)).result;
const createRequest = resultOf(requests.createRequest);
const reviewRequest = resultOf(requests.reviewRequest);
const cancelRequest = resultOf(requests.cancelRequest);

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A real receiver: records every POST; `answer` decides the status per request. */
class Receiver {
  readonly got: Received[] = [];
  answer: (r: Received) => { status: number; headers?: Record<string, string> } = () => ({ status: 204 });
  private server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const r = { path: req.url ?? '/', headers: req.headers, body };
      this.got.push(r);
      const a = this.answer(r);
      res.writeHead(a.status, a.headers).end();
    });
  });
  port = 0;
  async start() {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    return this;
  }
  url(path = '/hook') {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  close() {
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const verify = (secret: string, r: Received) => {
  const ts = String(r.headers['x-pyreach-timestamp']);
  const want = `sha256=${createHmac('sha256', secret).update(`${ts}.${r.body}`).digest('hex')}`;
  return r.headers['x-pyreach-signature'] === want;
};

let rx: Receiver;
before(async () => {
  rx = await new Receiver().start();
});
after(() => rx.close());

describeEachDatabase('notifications', (db) => {
  const cfg = (extra: Partial<n.NotifyConfig> = {}): n.NotifyConfig => ({
    ...n.DEFAULT_NOTIFY,
    box,
    allow: parseAllowList([`127.0.0.1:${rx.port}`]),
    publicUrl: 'https://pyreach.example',
    backoffMs: 10,
    backoffMaxMs: 50,
    timeoutMs: 2000,
    leaseMs: 5000,
    ...extra,
  });
  async function world(labels: Record<string, string>) {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { labels, processes: [pyProcess(300)] });
    return {
      prisma,
      admin,
      agent,
      op: await seedUser(prisma, 'operator'),
      ap: await seedUser(prisma, 'approver'),
      targets: {
        type: 'processes' as const,
        processes: [{ agentId: agent.id, pid: 300, startTime: '1300' }],
      },
    };
  }
  /** Delivers until nothing is due (retries included), at most `passes` passes. */
  async function drain(prisma: ReturnType<typeof db>['prisma'], c: n.NotifyConfig, passes = 20) {
    for (let i = 0; i < passes; i++) {
      const { handled } = await n.deliverDue(prisma, 'w1', c);
      const due = await prisma.notificationOutbox.count({ where: { status: 'pending' } });
      if (handled === 0 && due === 0) return;
      if (handled === 0) await new Promise((r) => setTimeout(r, 30));
    }
  }

  test('the SSRF guard refuses loopback, metadata, private and names resolving to them, naming url (400)', async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const strict = { allow: parseAllowList([]), box };
    const toLoopback: Resolver = async () => [{ address: '127.0.0.1', family: 4 }];
    const toPrivate: Resolver = async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '10.1.2.3', family: 4 },
    ];
    const cases: [string, Parameters<typeof n.createRule>[3]][] = [
      [`http://127.0.0.1:${rx.port}/hook`, strict],
      ['http://169.254.169.254/latest/meta-data/', strict],
      ['http://[::1]:8080/', strict],
      ['http://[::ffff:127.0.0.1]:8080/', strict],
      ['http://10.0.0.8/', strict],
      ['http://0.0.0.0:3000/', strict],
      [`http://localhost:${rx.port}/hook`, strict],
      ['http://hooks.example.com/', { ...strict, resolve: toLoopback }],
      ['http://hooks.example.com/', { ...strict, resolve: toPrivate }],
      // Allow-listed for another port only.
      [`http://127.0.0.1:${rx.port + 1}/`, { allow: parseAllowList([`127.0.0.1:${rx.port}`]), box }],
    ];
    for (const [url, c] of cases) {
      await assert.rejects(
        n.createRule(
          prisma,
          admin,
          { name: `x-${Math.random().toString(36).slice(2)}`, events: ['request.filed'], url },
          c,
        ),
        (e: unknown) =>
          e instanceof AppError &&
          e.code === 'VALIDATION' &&
          e.status === 400 &&
          e.userMessage.startsWith('url: ') &&
          JSON.stringify(e.details).includes('"url"'),
        url,
      );
    }
    await assert.rejects(
      n.createRule(
        prisma,
        admin,
        { name: 'ftp', events: ['request.filed'], url: 'ftp://example.com/' },
        strict,
      ),
      code('VALIDATION'),
    );
    await assert.rejects(
      n.createRule(
        prisma,
        admin,
        { name: 'cred', events: ['request.filed'], url: 'http://u:p@example.com/' },
        { ...strict, resolve: async () => [{ address: '93.184.216.34', family: 4 }] },
      ),
      code('VALIDATION'),
    );
    assert.equal(await prisma.notificationRule.count({ where: { createdById: admin.id } }), 0);
    // Allow-listed: the test receiver, and a CIDR.
    await n.createRule(
      prisma,
      admin,
      { name: `ok-${admin.id}`.toLowerCase(), events: ['request.filed'], url: rx.url() },
      cfg(),
    );
    await n.createRule(
      prisma,
      admin,
      { name: `cidr-${admin.id}`.toLowerCase(), events: ['request.filed'], url: 'http://10.9.8.7/' },
      { allow: parseAllowList(['10.9.0.0/16']), box },
    );
    const op = await seedUser(prisma, 'operator');
    await assert.rejects(
      n.createRule(prisma, op, { name: 'op', events: ['request.filed'], url: rx.url() }, cfg()),
      code('FORBIDDEN'),
    );
    await prisma.notificationRule.deleteMany({ where: { createdById: admin.id } });
  });

  test('events enter the outbox in the transaction of the change; a rolled-back change leaves none', async () => {
    const w = await world({ env: 'ntf-tx' });
    await seedPolicy(
      w.prisma,
      {
        name: `one-${w.agent.id}`,
        matchLabels: { env: 'ntf-tx' },
        priority: 10,
        requiredApprovals: 1,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const { rule, secret } = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `tx-${w.agent.id}`.toLowerCase(),
        events: ['request.filed', 'request.awaiting_approval', 'request.approved', 'request.finished'],
        url: rx.url('/tx'),
        targetLabels: { env: 'ntf-tx' },
      },
      cfg(),
    );
    assert.match(secret ?? '', /^whsec_/);
    const stored = await w.prisma.notificationRule.findUniqueOrThrow({ where: { id: rule.id } });
    assert.ok(!stored.secret.includes(secret!) && !stored.url.includes('/tx'), 'URL and secret are sealed');
    assert.equal(n.unseal(box, stored).secret, secret);
    assert.ok(
      !JSON.stringify(await n.listRules(w.prisma, w.admin, box)).includes(secret!),
      'never listed again',
    );
    const other = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `other-${w.agent.id}`.toLowerCase(),
        events: ['request.filed'],
        url: rx.url('/o'),
        targetLabels: { env: 'elsewhere' },
      },
      cfg(),
    );
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets: w.targets,
        reason: 'look <at> this',
      },
      new Date(),
      ATTEST,
    );
    const kinds = async (ruleId: string) =>
      (await w.prisma.notificationOutbox.findMany({ where: { ruleId }, orderBy: { eventKey: 'asc' } })).map(
        (o) => o.kind,
      );
    assert.deepEqual((await kinds(rule.id)).sort(), ['request.awaiting_approval', 'request.filed']);
    assert.deepEqual(await kinds(other.rule.id), [], 'the label filter holds');

    // The same append inside a transaction that fails: its outbox rows go with it.
    await assert.rejects(
      w.prisma.$transaction(async (tx) => {
        await appendAudit(tx, {
          actor: w.ap,
          action: 'request.approve',
          subjectType: 'request',
          subjectId: req.id,
        });
        assert.equal(
          await tx.notificationOutbox.count({ where: { ruleId: rule.id, kind: 'request.approved' } }),
          1,
        );
        throw new Error('roll back');
      }),
      /roll back/,
    );
    assert.equal(
      await w.prisma.notificationOutbox.count({ where: { ruleId: rule.id, kind: 'request.approved' } }),
      0,
    );

    await reviewRequest(
      w.prisma,
      w.ap,
      req.id,
      { decision: 'approve' },
      { authenticatedAt: new Date(), attestation: ATTEST },
    );
    await cancelRequest(w.prisma, w.op, req.id, 'not needed');
    assert.deepEqual((await kinds(rule.id)).sort(), [
      'request.approved',
      'request.awaiting_approval',
      'request.filed',
      'request.finished',
    ]);

    const before = rx.got.length;
    await drain(w.prisma, cfg());
    const got = rx.got.slice(before).filter((r) => r.path === '/tx');
    assert.equal(got.length, 4);
    for (const r of got) {
      assert.ok(verify(secret!, r), 'the HMAC over timestamp and body verifies');
      assert.ok(!verify('whsec_wrong', r));
      const ts = Number(r.headers['x-pyreach-timestamp']);
      assert.ok(Math.abs(ts - Date.now() / 1000) < 60, 'a current timestamp (receivers refuse old ones)');
      const body = JSON.parse(r.body) as {
        id: string;
        event: string;
        request: { id: string; url: string; state: string };
      };
      assert.equal(r.headers['idempotency-key'], body.id);
      assert.equal(r.headers['x-pyreach-event'], body.event);
      assert.equal(body.request.id, req.id);
      assert.equal(body.request.url, `https://pyreach.example/requests/${req.id}`);
    }
    const finished = got
      .map((r) => JSON.parse(r.body) as { event: string; request: { state: string } })
      .find((b) => b.event === 'request.finished');
    assert.equal(finished?.request.state, 'cancelled');
    const log = await n.listDeliveries(w.prisma, w.admin, rule.id);
    assert.equal(log.length, 4);
    assert.ok(log.every((d) => d.status === 'delivered' && d.attempts === 1 && d.requestId === req.id));
    assert.deepEqual((await n.listRules(w.prisma, w.admin, box)).find((r) => r.id === rule.id)?.deliveries, {
      pending: 0,
      delivered: 4,
      failed: 0,
    });
    // A database writer moving one rule's sealed URL and secret onto another gets a rule that cannot be opened.
    const moved = await w.prisma.notificationRule.findUniqueOrThrow({ where: { id: other.rule.id } });
    await w.prisma.notificationRule.update({
      where: { id: rule.id },
      data: { url: moved.url, secret: moved.secret },
    });
    assert.throws(() => n.unseal(box, { ...moved, id: rule.id }));
    await w.prisma.notificationRule.deleteMany({ where: { id: { in: [rule.id, other.rule.id] } } });
  });

  test('a failing receiver is retried with backoff until it answers; redirects and rebinding fail for good', async () => {
    const w = await world({ env: 'ntf-retry' });
    const mk = (name: string, path: string, c = cfg()) =>
      n.createRule(
        w.prisma,
        w.admin,
        {
          name: `${name}-${w.agent.id}`.toLowerCase(),
          events: ['request.filed'],
          url: path.startsWith('http') ? path : rx.url(path),
          targetLabels: { env: 'ntf-retry' },
        },
        c,
      );
    const flaky = await mk('flaky', '/flaky');
    const redirect = await mk('redirect', '/redirect');
    // Public at creation, loopback at delivery (DNS rebinding): refused when it is sent.
    let rebound = false;
    const rebinding: Resolver = async () => [{ address: rebound ? '127.0.0.1' : '93.184.216.34', family: 4 }];
    const rebind = await mk(
      'rebind',
      'http://rebind.example.com/',
      cfg({ allow: parseAllowList([]), resolve: rebinding }),
    );
    rebound = true;
    let flakyCalls = 0;
    rx.answer = (r) => {
      if (r.path === '/flaky') return { status: ++flakyCalls <= 2 ? 503 : 200 };
      if (r.path === '/redirect') return { status: 302, headers: { location: '/elsewhere' } };
      return { status: 204 };
    };
    const before = rx.got.length;
    await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(2)',
        targets: w.targets,
        reason: 'retry',
      },
      new Date(),
      ATTEST,
    );
    await drain(w.prisma, cfg({ resolve: rebinding, allow: parseAllowList([`127.0.0.1:${rx.port}`]) }));
    rx.answer = () => ({ status: 204 });
    const [f] = await n.listDeliveries(w.prisma, w.admin, flaky.rule.id);
    assert.equal(f?.status, 'delivered');
    assert.equal(f?.attempts, 3, 'two 503s, then delivered');
    assert.equal(f?.lastStatus, 200);
    const flakyBodies = rx.got.slice(before).filter((r) => r.path === '/flaky');
    assert.equal(
      new Set(flakyBodies.map((r) => r.headers['idempotency-key'])).size,
      1,
      'one key across retries',
    );
    const [rd] = await n.listDeliveries(w.prisma, w.admin, redirect.rule.id);
    assert.equal(rd?.status, 'failed');
    assert.match(rd?.lastError ?? '', /redirects are not followed/);
    assert.equal(rx.got.slice(before).filter((r) => r.path === '/elsewhere').length, 0);
    const [rb] = await n.listDeliveries(w.prisma, w.admin, rebind.rule.id);
    assert.equal(rb?.status, 'failed');
    assert.match(rb?.lastError ?? '', /refused: rebind\.example\.com resolves to 127\.0\.0\.1/);

    // Gives up after maxAttempts.
    const dead = await mk('dead', '/dead');
    rx.answer = (r) => ({ status: r.path === '/dead' ? 500 : 204 });
    await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(3)',
        targets: w.targets,
        reason: 'dead',
      },
      new Date(),
      ATTEST,
    );
    await drain(w.prisma, cfg({ maxAttempts: 3 }));
    rx.answer = () => ({ status: 204 });
    const [d] = await n.listDeliveries(w.prisma, w.admin, dead.rule.id);
    assert.equal(d?.status, 'failed');
    assert.equal(d?.attempts, 3);
    assert.match(d?.lastError ?? '', /answered 500/);
    await w.prisma.notificationRule.deleteMany({ where: { createdById: w.admin.id } });
  });

  test('a claimed delivery is leased: a second worker does not take it until the lease lapses', async () => {
    const w = await world({ env: 'ntf-lease' });
    const { rule } = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `lease-${w.agent.id}`.toLowerCase(),
        events: ['request.filed'],
        url: rx.url('/lease'),
        targetLabels: { env: 'ntf-lease' },
      },
      cfg(),
    );
    await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(4)',
        targets: w.targets,
        reason: 'lease',
      },
      new Date(),
      ATTEST,
    );
    const t0 = new Date();
    const a = await n.claimDue(w.prisma, 'A', t0, 1000, 10);
    assert.equal(a.filter((o) => o.ruleId === rule.id).length, 1);
    const b = await n.claimDue(w.prisma, 'B', new Date(t0.getTime() + 500), 1000, 10);
    assert.equal(b.filter((o) => o.ruleId === rule.id).length, 0, 'held by A');
    // A dies; after the lease B takes it, and A's late write cannot overwrite B's claim.
    const c = await n.claimDue(w.prisma, 'B', new Date(t0.getTime() + 1500), 1000, 10);
    const mine = c.find((o) => o.ruleId === rule.id);
    assert.ok(mine);
    assert.equal(mine.attempts, 2, 'both claims count as attempts');
    assert.equal(await n.deliverOne(w.prisma, { ...mine, leaseOwner: 'A' }, 'A', cfg()), 'lost-lease');
    assert.equal(await n.deliverOne(w.prisma, mine, 'B', cfg()), 'delivered');
    await w.prisma.notificationRule.delete({ where: { id: rule.id } });
  });

  test('Slack rules get blocks with a deep link, the reason escaped, and no signature', async () => {
    const w = await world({ env: 'ntf-slack' });
    const { rule, secret } = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `slack-${w.agent.id}`.toLowerCase(),
        events: ['request.filed'],
        channel: 'slack',
        url: rx.url('/services/T0/B0/xyz'),
        targetLabels: { env: 'ntf-slack' },
      },
      cfg(),
    );
    assert.equal(secret, null);
    assert.equal(rule.url, `http://127.0.0.1:${rx.port}/…`, 'the secret path of a Slack URL is masked');
    const before = rx.got.length;
    const req = await createRequest(
      w.prisma,
      w.op,
      {
        kind: 'custom',
        code: 'print(5)',
        targets: w.targets,
        reason: 'see <https://evil|here>',
      },
      new Date(),
      ATTEST,
    );
    await drain(w.prisma, cfg());
    const got = rx.got.slice(before).filter((r) => r.path === '/services/T0/B0/xyz');
    assert.equal(got.length, 1);
    assert.equal(got[0]?.headers['x-pyreach-signature'], undefined);
    const msg = JSON.parse(got[0]!.body) as {
      text: string;
      blocks: { type: string; text?: { text: string }; elements?: { url: string }[] }[];
    };
    assert.ok(msg.text.includes(`https://pyreach.example/requests/${req.id}`));
    assert.equal(msg.blocks[1]?.elements?.[0]?.url, `https://pyreach.example/requests/${req.id}`);
    assert.ok(
      msg.blocks[0]?.text?.text.includes('&lt;https://evil|here&gt;'),
      'no link forged from the reason',
    );
    await w.prisma.notificationRule.delete({ where: { id: rule.id } });
  });
  test('an agent gone past the lost-after period is told once per loss (signed), again only after it came back', async () => {
    const w = await world({ env: 'ntf-lost' });
    const { rule, secret } = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `lost-${w.agent.id}`.toLowerCase(),
        events: ['agent.lost'],
        url: rx.url('/lost'),
        targetLabels: { env: 'ntf-lost' },
      },
      cfg(),
    );
    const elsewhere = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `lost-else-${w.agent.id}`.toLowerCase(),
        events: ['agent.lost'],
        url: rx.url('/lost-else'),
        targetLabels: { env: 'elsewhere' },
      },
      cfg(),
    );
    // In the past, so the rows are due now (an event's time never goes back along the chain).
    const t0 = Date.now() - 3_600_000;
    const at = (s: number) => new Date(t0 + s * 1000);
    const lostAfterSeconds = 120;
    const nobody = async (_agentId: string) => false;
    const sweep = (s: number, connectedAnywhere = nobody) =>
      declareLostAgents(w.prisma, { lostAfterSeconds, connectedAnywhere }, at(s));
    await markConnected(w.prisma, w.agent.id, at(0));
    await markDisconnected(w.prisma, w.agent.id, at(10));
    assert.ok(!(await sweep(10 + 60)).lost.includes(w.agent.id), 'within the period: not lost');
    // Two replicas sweeping at once (a leader hand-over): one loss recorded.
    const [a, b] = await Promise.all([sweep(10 + 121), sweep(10 + 121)]);
    assert.equal([...a.lost, ...b.lost].filter((id) => id === w.agent.id).length, 1);
    assert.ok(!(await sweep(10 + 900)).lost.includes(w.agent.id), 'not again while it stays away');
    const rows = () => w.prisma.notificationOutbox.findMany({ where: { ruleId: rule.id } });
    assert.equal((await rows()).length, 1, 'one notification per loss');
    assert.equal(await w.prisma.notificationOutbox.count({ where: { ruleId: elsewhere.rule.id } }), 0);
    const audited = await w.prisma.auditEvent.findMany({
      where: { action: 'agent.lost', subjectId: w.agent.id },
    });
    assert.equal(audited.length, 1);
    assert.equal(audited[0]?.actorName, 'agent-watch');

    const before = rx.got.length;
    await drain(w.prisma, cfg());
    const got = rx.got.slice(before).filter((r) => r.path === '/lost');
    assert.equal(got.length, 1);
    assert.ok(verify(secret!, got[0]!), 'the HMAC over timestamp and body verifies');
    const body = JSON.parse(got[0]!.body) as {
      event: string;
      link: string;
      request: null;
      data: { subjectId: string; name: string; labels: Record<string, string>; lastSeenAt: string };
    };
    assert.equal(body.event, 'agent.lost');
    assert.equal(body.request, null);
    assert.equal(body.link, 'https://pyreach.example/fleet');
    assert.equal(body.data.subjectId, w.agent.id);
    assert.equal(body.data.name, w.agent.name);
    assert.deepEqual(body.data.labels, { env: 'ntf-lost' });
    assert.equal(body.data.lastSeenAt, at(10).toISOString());
    // A Slack rule gets the agent's name and a button to the fleet page (no request to link to).
    const slack = n.slackMessage(n.payloadOf((await rows())[0]!, 'https://pyreach.example'));
    const [section, actions] = slack.blocks as unknown as [
      { text: { text: string } },
      { elements: { url: string }[] },
    ];
    assert.match(section.text.text, new RegExp(`Agent lost\\*\\n> ${w.agent.name} last seen`));
    assert.deepEqual(
      actions.elements.map((e) => e.url),
      ['https://pyreach.example/fleet'],
    );

    // It came back, and went away again: a new loss, told again.
    await markConnected(w.prisma, w.agent.id, at(1000));
    assert.equal(
      (await w.prisma.agent.findUniqueOrThrow({ where: { id: w.agent.id } })).lostAt,
      null,
      'the claim is cleared on connect',
    );
    await markDisconnected(w.prisma, w.agent.id, at(1010));
    assert.ok((await sweep(1010 + 121)).lost.includes(w.agent.id));
    assert.equal((await rows()).length, 2);

    // Left `online` by a replica that died: recorded disconnected when no replica holds it, lost a period later;
    // one that a replica does hold is left alone however quiet.
    const orphan = await seedAgent(w.prisma, w.admin, { labels: { env: 'ntf-lost' } });
    await markConnected(w.prisma, orphan.id, at(2000));
    const held = await sweep(2000 + 500, async (id) => id === orphan.id);
    assert.ok(!held.disconnected.includes(orphan.id) && !held.lost.includes(orphan.id));
    assert.ok((await sweep(2000 + 500)).disconnected.includes(orphan.id));
    const later = await sweep(2000 + 500 + 121);
    assert.ok(later.lost.includes(orphan.id));
    // A revoked agent is never reported lost.
    const gone = await seedAgent(w.prisma, w.admin, { labels: { env: 'ntf-lost' } });
    await markConnected(w.prisma, gone.id, at(3000));
    await markDisconnected(w.prisma, gone.id, at(3010));
    await w.prisma.agent.update({ where: { id: gone.id }, data: { revokedAt: at(3020) } });
    assert.ok(!(await sweep(3010 + 500)).lost.includes(gone.id));
    assert.equal((await rows()).length, 3);
    await drain(w.prisma, cfg());
    await w.prisma.notificationRule.deleteMany({ where: { createdById: w.admin.id } });
  });

  // Last in the file: it breaks this database's chain for good.
  test('a tampered audit row is recorded audit.verify_failed and delivered once; a database writer cannot suppress it', async () => {
    const w = await world({ env: 'ntf-verify' });
    const key = testKeyPair();
    const fkey = fingerprintKeyOf(key.privateKey);
    const { rule, secret } = await n.createRule(
      w.prisma,
      w.admin,
      {
        name: `verify-${w.agent.id}`.toLowerCase(),
        events: ['audit.verify_failed'],
        url: rx.url('/verify'),
        // A request filter does not hide a broken chain: it is everyone's.
        targetLabels: { env: 'unrelated' },
      },
      cfg(),
    );
    const victim = await w.prisma.auditEvent.findFirstOrThrow({
      where: { action: 'notification_rule.create', subjectId: rule.id },
    });
    // The attacker: edits a row behind the trigger's back...
    await w.prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe('ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_update');
      await tx.$executeRawUnsafe(`UPDATE audit_event SET "actorName" = 'nobody' WHERE seq = ${victim.seq}`);
      await tx.$executeRawUnsafe('ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_update');
    });
    // ...then writes the alert's event themselves (a well-linked look-alike) and outbox rows under every key
    // they can predict, already "delivered", hoping the real ones are skipped as duplicates.
    const head = await w.prisma.$transaction((tx) => lockHead(tx));
    for (let seq = head!.seq + 1n; seq <= head!.seq + 4n; seq++)
      await w.prisma.notificationOutbox.create({
        data: {
          id: `ntf_forged_${seq}_${w.agent.id}`,
          ruleId: rule.id,
          eventKey: `${seq}:audit.verify_failed`,
          kind: 'audit.verify_failed',
          payload: {},
          status: 'delivered',
        },
      });
    await w.prisma.$transaction((tx) =>
      appendAudit(tx, {
        actor: { type: 'system', name: 'audit-verifier' },
        action: 'audit.verify_failed',
        subjectType: 'audit_event',
        subjectId: victim.seq.toString(),
        data: {
          brokenAt: victim.seq.toString(),
          reason: `event ${victim.seq} was altered: its content no longer matches its hash`,
          fingerprint: '0'.repeat(64),
        },
      }),
    );
    assert.equal(
      await w.prisma.notificationOutbox.count({ where: { ruleId: rule.id, status: 'pending' } }),
      0,
      'an audit.verify_failed event in the trail is not itself an alert (the verifier sends those)',
    );

    const run = async () => {
      const v = await verifyWithCheckpoints(w.prisma, [key.publicKey]);
      assert.equal(v.chain.ok, false);
      if (v.chain.ok) throw new Error('unreachable');
      return recordVerifyFailure(w.prisma, fkey, v.chain, { source: 'periodic', checkpoints: v.checkpoints });
    };
    // Two replicas verifying at once record it once; a later verification of the same break adds nothing.
    const [x, y] = await Promise.all([run(), run()]);
    assert.deepEqual([x.recorded, y.recorded].sort(), [false, true]);
    const first = x.recorded ? x : y;
    assert.equal(first.rules, 1);
    assert.equal(first.written, 1, 'written under a key the attacker could not guess');
    assert.equal((await run()).recorded, false);
    const events = await w.prisma.auditEvent.findMany({ where: { action: 'audit.verify_failed' } });
    const real = events.filter((e) => (e.data as { fingerprint?: string }).fingerprint === first.fingerprint);
    assert.equal(real.length, 1);
    assert.equal((real[0]!.data as { brokenAt: string }).brokenAt, victim.seq.toString());
    assert.equal(real[0]!.actorType, 'system');

    const before = rx.got.length;
    await drain(w.prisma, cfg());
    const got = rx.got.slice(before).filter((r) => r.path === '/verify');
    assert.equal(got.length, 1, 'delivered once');
    assert.ok(verify(secret!, got[0]!));
    const body = JSON.parse(got[0]!.body) as {
      event: string;
      link: string;
      data: { brokenAt: string; reason: string; source: string };
    };
    assert.equal(body.event, 'audit.verify_failed');
    assert.equal(body.link, 'https://pyreach.example/audit');
    assert.equal(body.data.brokenAt, victim.seq.toString());
    assert.match(body.data.reason, /altered/);
    // Verifying again (periodic or asked for) sends nothing more.
    await run();
    await drain(w.prisma, cfg());
    assert.equal(rx.got.slice(before).filter((r) => r.path === '/verify').length, 1);
  });
});
