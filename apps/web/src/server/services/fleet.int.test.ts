import assert from 'node:assert/strict';
import { test } from 'node:test';
import { markConnected } from './agents';
import { AppError } from './errors';
import { fleetView, processDetail } from './inventory';
import { describeEachDatabase, pyProcess, seedAgent, seedUser } from '../../../../../test/support/services';

const here = () => false;
const pids = (page: Awaited<ReturnType<typeof fleetView>>) =>
  page.hosts.flatMap((h) => h.processes.map((p) => `${h.hostname}:${p.pid}`));

describeEachDatabase('fleet view (paged, filtered on the server)', (db) => {
  let seeded: Promise<void> | undefined;
  // One fleet for the suite: web (prod, online) with 120 processes, batch (staging, offline) with 3, and an
  // empty host.
  const seed = () =>
    (seeded ??= (async () => {
      const { prisma } = db();
      const admin = await seedUser(prisma, 'admin');
      const web = await seedAgent(prisma, admin, {
        hostname: 'web-1',
        labels: { env: 'prod' },
        processes: Array.from({ length: 120 }, (_, i) =>
          pyProcess(1000 + i, {
            cmdline: [
              '/usr/bin/python3.14',
              '-u',
              `/srv/app/worker-${i}.py`,
              '--queue',
              i % 2 ? 'odd' : 'even',
            ],
            remoteDebugEnabled: i === 7 ? false : true,
          }),
        ),
      });
      await markConnected(prisma, web.id, new Date());
      await seedAgent(prisma, admin, {
        hostname: 'batch-1',
        labels: { env: 'staging' },
        processes: [
          pyProcess(50, {
            cmdline: ['python3.14', '-m', 'celery', 'worker'],
            user: 'celery',
            threads: [
              { tid: 50, main: true, name: 'celery' },
              { tid: 53, main: false, name: 'Worker-1' },
            ],
          }),
          pyProcess(51, { remoteDebugEnabled: null, inspectError: 'EPERM' }),
          pyProcess(52, {
            cmdline: ['python3.14', 'demo/service.py'],
            inContainer: true,
            container: 'docker:abc',
          }),
        ],
      });
      await seedAgent(prisma, admin, { hostname: 'empty-1', labels: { env: 'dev' }, processes: [] });
    })());

  test('pages through every process in hostname, pid order and reports fleet-wide totals', async () => {
    await seed();
    const first = await fleetView(db().prisma, { limit: 50 }, here);
    assert.equal(first.page.total, 123);
    assert.deepEqual(first.totals, { hosts: 3, online: 1, processes: 123 });
    assert.deepEqual(first.labels, ['env=dev', 'env=prod', 'env=staging']);
    assert.deepEqual(
      first.hosts.map((h) => [h.hostname, h.processes.length]),
      [
        ['batch-1', 3],
        ['empty-1', 0],
        ['web-1', 47],
      ],
    );
    const seen = new Set(pids(first));
    for (let offset = 50; offset < 123; offset += 50) {
      const page = await fleetView(db().prisma, { offset, limit: 50 }, here);
      assert.ok(!page.hosts.some((h) => h.hostname === 'empty-1'), 'empty hosts only on the first page');
      for (const k of pids(page)) {
        assert.ok(!seen.has(k), `${k} on two pages`);
        seen.add(k);
      }
    }
    assert.equal(seen.size, 123);
  });

  test('text words must all match, across host, script, user and container', async () => {
    await seed();
    const { prisma } = db();
    assert.deepEqual(pids(await fleetView(prisma, { q: 'worker-17.py' }, here)), ['web-1:1017']);
    assert.deepEqual(pids(await fleetView(prisma, { q: 'CELERY worker' }, here)), ['batch-1:50']);
    assert.deepEqual(pids(await fleetView(prisma, { q: 'docker:abc service' }, here)), ['batch-1:52']);
    const odd = await fleetView(prisma, { q: 'web-1 odd', limit: 500 }, here);
    assert.equal(odd.page.total, 60);
    const none = await fleetView(prisma, { q: 'no-such-thing' }, here);
    assert.deepEqual([none.page.total, none.hosts.length], [0, 0]);
  });

  test('label, status and remote-debug filters run in the database', async () => {
    await seed();
    const { prisma } = db();
    const staging = await fleetView(prisma, { labels: { env: 'staging' } }, here);
    assert.deepEqual(pids(staging), ['batch-1:50', 'batch-1:51', 'batch-1:52']);
    const online = await fleetView(prisma, { status: 'online', limit: 1 }, here);
    assert.equal(online.page.total, 120);
    const offline = await fleetView(prisma, { status: 'offline' }, here);
    assert.deepEqual(
      offline.hosts.map((h) => h.hostname),
      ['batch-1', 'empty-1'],
    );
    assert.deepEqual(pids(await fleetView(prisma, { debug: 'off' }, here)), ['web-1:1007']);
    assert.deepEqual(pids(await fleetView(prisma, { debug: 'unknown' }, here)), ['batch-1:51']);
    assert.equal((await fleetView(prisma, { debug: 'on', limit: 1 }, here)).page.total, 121);
  });

  test('the drawer reads one process with its host; an unknown id is NOT_FOUND', async () => {
    await seed();
    const { prisma } = db();
    const page = await fleetView(prisma, { q: 'celery' }, here);
    const id = page.hosts[0]!.processes[0]!.id;
    const d = await processDetail(prisma, id, here);
    assert.equal(d.host.hostname, 'batch-1');
    assert.deepEqual(d.process.cmdline, ['python3.14', '-m', 'celery', 'worker']);
    assert.deepEqual(
      d.process.threads,
      [
        { tid: 50, main: true, name: 'celery' },
        { tid: 53, main: false, name: 'Worker-1' },
      ],
      'thread names as the agent reported them (issue 12: threads as facts)',
    );
    assert.deepEqual(d.recentRequests, []);
    await assert.rejects(
      processDetail(prisma, 'proc_nope', here),
      (e) => e instanceof AppError && e.code === 'NOT_FOUND',
    );
  });
});
