/**
 * Notifications against the REAL control-plane process on PostgreSQL, with a real local HTTP
 * receiver (allow-listed by host:port, as an admin would): rules over HTTP (secret once, URL masked, admins
 * only), the SSRF guard answering a field-naming 400 for loopback, metadata and a name resolving to loopback,
 * HMAC-signed deliveries, and exactly-once by idempotency key across `kill -9` of the control plane in the
 * middle of a delivery: after the restart every event arrives, the interrupted one again under the same key,
 * a failed answer is retried, and the delivery log shows it.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../support/api';
import { freePort, startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { enroll, TestAgent, type EnrolledAgent } from '../support/test-agent';

interface Got {
  headers: IncomingHttpHeaders;
  body: string;
}

interface Delivery {
  id: string;
  status: string;
  attempts: number;
  lastError: string | null;
  kind: string;
}

// PostgreSQL only: the same file passes on PGlite (measured 93 s there: two server starts on embedded
// PostgreSQL, vs 38 s), and the outbox, lease and delivery rules run on both databases in
// apps/web/src/server/services/notifications.int.test.ts. Add 'pglite' here to run it there too.
for (const kind of ['postgres'] as DbKind[]) {
  describe(`notifications through the real control plane (${kind})`, () => {
    let cp: ControlPlane;
    let admin: ApiClient, operator: ApiClient;
    let agentId: string;
    let enrolled: EnrolledAgent;
    const got: Got[] = [];
    /** What the receiver does with the next POST: answer a status, or hold the response open. */
    let mode: 'ok' | 'hold' | 'fail-once' = 'ok';
    let held: { res: ServerResponse; got: Got } | null = null;
    let onHold: (() => void) | null = null;
    const receiver = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        const g = { headers: req.headers, body };
        got.push(g);
        if (mode === 'hold' && !held) {
          held = { res, got: g };
          onHold?.();
          return;
        }
        if (mode === 'fail-once') {
          mode = 'ok';
          res.writeHead(503).end('busy');
          return;
        }
        res.writeHead(204).end();
      });
    });
    let rxPort = 0;

    const fileRequest = (reason: string) =>
      operator.ok(
        operator.post<{ request: { id: string } }>('/api/requests', {
          kind: 'library',
          scriptId: 'threads.dump_stacks',
          targets: { type: 'processes', processes: [{ agentId, pid: 501, startTime: '100501' }] },
          reason,
        }),
      );

    before(async () => {
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      const addr = receiver.address();
      rxPort = typeof addr === 'object' && addr ? addr.port : 0;
      cp = await startControlPlane(kind, {
        PYREACH_NOTIFY_ALLOW: `127.0.0.1:${rxPort}`,
        PYREACH_NOTIFY_INTERVAL_MS: '100',
        PYREACH_NOTIFY_LEASE_MS: '2000',
        PYREACH_NOTIFY_BACKOFF_MS: '100',
        PYREACH_AGENT_LOST_AFTER_SECONDS: '2',
        PYREACH_AUDIT_VERIFY_INTERVAL_MS: '500',
      });
      [admin, operator] = await Promise.all([
        ApiClient.signIn(cp.baseUrl, USERS.admin),
        ApiClient.signIn(cp.baseUrl, USERS.operator),
      ]);
      const join = await admin.ok(
        admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'ntf' } }),
      );
      enrolled = await enroll(cp.baseUrl, join.joinToken.token, { hostname: 'ntf-1' });
      agentId = enrolled.agentId;
    });
    after(async () => {
      held?.res.destroy();
      await cp?.cleanup();
      receiver.closeAllConnections();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    });

    it('refuses loopback, metadata and names resolving to loopback with a 400 naming url; admins only', async () => {
      const other = await freePort();
      for (const url of [
        `http://127.0.0.1:${other}/hook`,
        'http://169.254.169.254/latest/meta-data/',
        `http://localhost:${other}/hook`,
        `http://localhost:${rxPort}/hook`,
        'http://[::1]/hook',
      ]) {
        const r = await admin.post<never>('/api/notifications/rules', {
          name: 'ssrf',
          events: ['request.filed'],
          url,
        });
        assert.equal(r.status, 400, url);
        assert.ok(!r.body.ok);
        assert.equal(r.body.error.code, 'VALIDATION');
        assert.match(r.body.error.message, /^url: /, url);
      }
      const op = await operator.post<never>('/api/notifications/rules', {
        name: 'op',
        events: ['request.filed'],
        url: `http://127.0.0.1:${rxPort}/hook`,
      });
      assert.equal(op.status, 403);
      const bad = await admin.post<never>('/api/notifications/rules', {
        name: 'bad',
        events: ['request.nope'],
        url: `http://127.0.0.1:${rxPort}/hook`,
      });
      assert.equal(bad.status, 400);
    });

    it('delivers signed events exactly once by idempotency key across a SIGKILL mid-delivery', async () => {
      const created = await admin.ok(
        admin.post<{ rule: { id: string; url: string }; secret: string }>('/api/notifications/rules', {
          name: 'pager',
          events: ['request.filed', 'request.awaiting_approval'],
          url: `http://127.0.0.1:${rxPort}/hooks/pyreach?token=abc`,
          targetLabels: { env: 'ntf' },
        }),
      );
      assert.equal(created.rule.url, `http://127.0.0.1:${rxPort}/…`, 'masked');
      const listed = await admin.ok(admin.get<{ rules: unknown[] }>('/api/notifications/rules'));
      assert.ok(!JSON.stringify(listed).includes(created.secret), 'the secret is shown once');

      // The first delivery hangs in the receiver; the control plane is killed while it waits.
      mode = 'hold';
      const holding = new Promise<void>((resolve) => (onHold = resolve));
      await fileRequest('first');
      await holding;
      await fileRequest('second'); // committed with its outbox rows before the kill
      const exited = new Promise((resolve) => cp.proc.once('exit', resolve));
      cp.proc.kill('SIGKILL');
      await exited;
      const interrupted = String(held!.got.headers['idempotency-key']);
      held!.res.destroy();
      mode = 'fail-once'; // and the first answer after the restart is a failure: retried
      await cp.restart();
      [admin, operator] = await Promise.all([
        ApiClient.signIn(cp.baseUrl, USERS.admin),
        ApiClient.signIn(cp.baseUrl, USERS.operator),
      ]);
      await fileRequest('third');

      const log = await eventually(
        'six deliveries delivered',
        async () => {
          const r = await admin.ok(
            admin.get<{ deliveries: Delivery[] }>(`/api/notifications/rules/${created.rule.id}/deliveries`),
          );
          return r.deliveries.length === 6 && r.deliveries.every((d) => d.status === 'delivered')
            ? r.deliveries
            : null;
        },
        30_000,
      );
      const keys = got.map((g) => String(g.headers['idempotency-key']));
      assert.deepEqual(
        [...new Set(keys)].sort(),
        log.map((d) => d.id).sort(),
        'the receiver saw every event, and (deduped by key) each once',
      );
      assert.ok(
        keys.filter((k) => k === interrupted).length >= 2,
        'the interrupted one came again, same key',
      );
      assert.ok(
        log.some((d) => d.attempts >= 2),
        'attempts are counted (the interrupted and the failed one)',
      );
      for (const g of got) {
        const ts = String(g.headers['x-pyreach-timestamp']);
        const sig = createHmac('sha256', created.secret).update(`${ts}.${g.body}`).digest('hex');
        assert.equal(g.headers['x-pyreach-signature'], `sha256=${sig}`);
        const body = JSON.parse(g.body) as { id: string; request: { url: string } };
        assert.equal(body.id, g.headers['idempotency-key']);
        assert.ok(body.request.url.startsWith(`${cp.baseUrl}/requests/`));
      }
    });
    // Last: it breaks the chain of this database for good.
    it('an agent whose socket dropped is notified lost once; a tampered audit row is alerted once by the periodic verifier', async () => {
      const created = await admin.ok(
        admin.post<{ rule: { id: string }; secret: string }>('/api/notifications/rules', {
          name: 'fleet-watch',
          events: ['agent.lost', 'audit.verify_failed'],
          url: `http://127.0.0.1:${rxPort}/hooks/watch`,
          targetLabels: { env: 'ntf' },
        }),
      );
      const deliveries = async () =>
        (
          await admin.ok(
            admin.get<{ deliveries: Delivery[] }>(`/api/notifications/rules/${created.rule.id}/deliveries`),
          )
        ).deliveries;
      const mine = (event: string) =>
        got.filter((g) => (JSON.parse(g.body) as { event: string }).event === event);
      const signed = (g: Got) => {
        const ts = String(g.headers['x-pyreach-timestamp']);
        const sig = createHmac('sha256', created.secret).update(`${ts}.${g.body}`).digest('hex');
        return g.headers['x-pyreach-signature'] === `sha256=${sig}`;
      };

      // A real agent connection, then dropped: lost 2 s later (PYREACH_AGENT_LOST_AFTER_SECONDS), told once.
      const ta = await TestAgent.connect(enrolled);
      await eventually('the agent online', async () => {
        const r = await admin.ok(admin.get<{ agent: { status: string } }>(`/api/agents/${agentId}`));
        return r.agent.status === 'online';
      });
      ta.close();
      const lost = await eventually(
        'agent.lost delivered',
        async () => {
          const d = (await deliveries()).filter((x) => x.kind === 'agent.lost');
          return d.length > 0 && d.every((x) => x.status === 'delivered') ? d : null;
        },
        20_000,
      );
      // A few more housekeeping passes (300 ms each) while it stays away: nothing more.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(lost.length, 1);
      assert.equal((await deliveries()).filter((x) => x.kind === 'agent.lost').length, 1);
      const lostGot = mine('agent.lost');
      assert.equal(new Set(lostGot.map((g) => g.headers['idempotency-key'])).size, 1);
      assert.ok(lostGot.every(signed), 'HMAC-signed');
      const body = JSON.parse(lostGot[0]!.body) as { data: { subjectId: string; name: string } };
      assert.equal(body.data.subjectId, agentId);
      assert.equal(body.data.name, 'ntf-1');

      // A database writer edits an event behind the trigger's back; verification (asked twice) alerts once.
      const victim = await cp.db!.prisma.auditEvent.findFirstOrThrow({
        where: { action: 'notification_rule.create', subjectId: created.rule.id },
      });
      await cp.db!.prisma.$transaction(async (tx) => {
        await tx.$executeRawUnsafe('ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_update');
        await tx.$executeRawUnsafe(`UPDATE audit_event SET "actorName" = 'nobody' WHERE seq = ${victim.seq}`);
        await tx.$executeRawUnsafe('ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_update');
      });
      // The periodic verifier (every 500 ms here) finds it...
      await eventually(
        'audit.verify_failed delivered',
        async () =>
          (await deliveries()).some((x) => x.kind === 'audit.verify_failed' && x.status === 'delivered'),
        20_000,
      );
      // ...and neither asking for a verification nor more periodic passes tell it again.
      const v = await admin.ok(admin.get<{ valid: boolean; brokenAt: string }>('/api/audit/verify'));
      assert.equal(v.valid, false);
      assert.equal(v.brokenAt, victim.seq.toString());
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await deliveries()).filter((x) => x.kind === 'audit.verify_failed').length, 1);
      const alert = mine('audit.verify_failed');
      assert.equal(new Set(alert.map((g) => g.headers['idempotency-key'])).size, 1);
      assert.ok(alert.every(signed));
      const a = JSON.parse(alert[0]!.body) as {
        link: string;
        data: { brokenAt: string; reason: string; source: string };
      };
      assert.equal(a.data.brokenAt, victim.seq.toString());
      assert.equal(a.data.source, 'periodic');
      assert.match(a.data.reason, /altered/);
      assert.equal(a.link, `${cp.baseUrl}/audit`);
      assert.match(cp.logs(), /AUDIT CHAIN VERIFICATION FAILED/);
    });
  });
}
