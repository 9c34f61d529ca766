import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PythonProcess } from '@pyreach/protocol/inventory';
import { markConnected } from './agents';
import { AppError } from './errors';
import { applyDelta, fleetView, matchSelector, processDetail, type Selector } from './inventory';
import { createRequest, previewPolicy } from './requests';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedPolicy,
  seedUser,
  type UserActor,
} from '../../../../../test/support/services';

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

// ---- issue 14 item 3: targeting by what people know (namespace, pod labels, container, workload) ------------

type PodFacts = NonNullable<NonNullable<PythonProcess['containerIdentity']>['pod']>;
const hex64 = (n: number) => n.toString(16).padStart(64, '0');

/** A process in a Kubernetes pod, with the identity an agent with pod-watch access reports. */
function podProcess(pid: number, pod: Partial<PodFacts> & { name: string; namespace: string }) {
  return pyProcess(pid, {
    inContainer: true,
    container: `containerd:${hex64(pid).slice(0, 12)}`,
    containerIdentity: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: hex64(pid),
      podUid: `00000000-0000-4000-8000-${String(pid).padStart(12, '0')}`,
      pod: {
        uid: `00000000-0000-4000-8000-${String(pid).padStart(12, '0')}`,
        nodeName: 'node-1',
        containerName: 'app',
        labels: {},
        workload: null,
        ...pod,
      },
    },
  });
}

describeEachDatabase(
  'pod targeting (selectors and fleet by namespace, pod labels, container, workload)',
  (db) => {
    let seeded: Promise<{ node: string; dev: string; admin: UserActor }> | undefined;
    // node-1 (env=prod): checkout ×2 in shop, ledger in payments, a host process, a container without pod facts.
    // node-2 (env=dev): one more checkout pod in shop. Then a delta on node-1 relabels one pod and adds another.
    const seed = () =>
      (seeded ??= (async () => {
        const { prisma } = db();
        const admin = await seedUser(prisma, 'admin');
        const checkout = { kind: 'Deployment', name: 'checkout' };
        const node = await seedAgent(prisma, admin, {
          hostname: 'node-1',
          labels: { env: 'prod' },
          processes: [
            podProcess(200, {
              name: 'checkout-7d9f-abcde',
              namespace: 'shop',
              containerName: 'web',
              labels: { app: 'checkout', 'app.kubernetes.io/part-of': 'store', track: 'stable' },
              workload: checkout,
            }),
            podProcess(201, {
              name: 'checkout-7d9f-fghij',
              namespace: 'shop',
              containerName: 'sidecar',
              labels: { app: 'checkout', track: 'stable' },
              workload: checkout,
            }),
            podProcess(202, {
              name: 'ledger-0',
              namespace: 'payments',
              containerName: 'ledger',
              labels: { app: 'ledger' },
              workload: { kind: 'StatefulSet', name: 'ledger' },
            }),
            pyProcess(203),
            pyProcess(204, {
              inContainer: true,
              container: 'docker:0123456789ab',
              containerIdentity: {
                cgroup: 'v2',
                runtime: 'docker',
                containerId: hex64(204),
                podUid: null,
                unknown: ['not in a Kubernetes pod'],
              },
            }),
          ],
        });
        const dev = await seedAgent(prisma, admin, {
          hostname: 'node-2',
          labels: { env: 'dev' },
          processes: [
            podProcess(300, {
              name: 'checkout-55c4-zzzzz',
              namespace: 'shop',
              containerName: 'web',
              labels: { app: 'checkout', track: 'canary' },
              workload: checkout,
            }),
          ],
        });
        await applyDelta(prisma, node.id, {
          upserted: [
            podProcess(201, {
              name: 'checkout-7d9f-fghij',
              namespace: 'shop',
              containerName: 'sidecar',
              labels: { app: 'checkout', track: 'canary' },
              workload: checkout,
            }),
            podProcess(205, {
              name: 'batch-28391-x',
              namespace: 'jobs',
              workload: { kind: 'Job', name: 'nightly' },
            }),
          ],
          removed: [],
          scannedAt: new Date().toISOString(),
        });
        return { node: node.id, dev: dev.id, admin };
      })());
    const targets = async (selector: Selector) =>
      (await matchSelector(db().prisma, selector)).map((p) => `${p.hostname}:${p.pid}`).sort();

    test('stores the container identity from snapshots and replaces it from deltas', async () => {
      await seed();
      const page = await fleetView(db().prisma, { q: 'node-1', limit: 500 }, here);
      const byPid = new Map(page.hosts.flatMap((h) => h.processes.map((p) => [p.pid, p])));
      assert.deepEqual(byPid.get(200)?.containerIdentity?.pod?.workload, {
        kind: 'Deployment',
        name: 'checkout',
      });
      assert.equal(byPid.get(200)?.containerIdentity?.runtime, 'containerd');
      assert.deepEqual(byPid.get(201)?.containerIdentity?.pod?.labels, { app: 'checkout', track: 'canary' });
      assert.equal(byPid.get(205)?.containerIdentity?.pod?.namespace, 'jobs', 'added by the delta');
      assert.equal(byPid.get(203)?.containerIdentity, undefined, 'a host process has none');
      assert.deepEqual(byPid.get(204)?.containerIdentity?.unknown, ['not in a Kubernetes pod']);
    });

    test('selects by namespace, by a pod label set (all must match), by container and by workload', async () => {
      await seed();
      assert.deepEqual(await targets({ labels: {}, process: { pod: { namespace: 'shop' } } }), [
        'node-1:200',
        'node-1:201',
        'node-2:300',
      ]);
      assert.deepEqual(
        await targets({ labels: {}, process: { pod: { labels: { app: 'checkout', track: 'canary' } } } }),
        ['node-1:201', 'node-2:300'],
        'the delta moved 201 to canary',
      );
      assert.deepEqual(
        await targets({ labels: {}, process: { pod: { labels: { 'app.kubernetes.io/part-of': 'store' } } } }),
        ['node-1:200'],
      );
      assert.deepEqual(
        await targets({ labels: {}, process: { pod: { namespace: 'shop', container: 'web' } } }),
        ['node-1:200', 'node-2:300'],
      );
      assert.deepEqual(
        await targets({
          labels: {},
          process: { pod: { workload: { kind: 'StatefulSet', name: 'ledger' } } },
        }),
        ['node-1:202'],
      );
      assert.deepEqual(await targets({ labels: {}, process: { pod: { workload: { name: 'checkout' } } } }), [
        'node-1:200',
        'node-1:201',
        'node-2:300',
      ]);
      assert.deepEqual(
        await targets({
          labels: {},
          process: { pod: { workload: { kind: 'StatefulSet', name: 'checkout' } } },
        }),
        [],
        'kind and name together',
      );
      assert.deepEqual(
        await targets({ labels: { env: 'prod' }, process: { pod: { namespace: 'shop' } } }),
        ['node-1:200', 'node-1:201'],
        'host labels and pod terms both apply',
      );
      const [shown] = await matchSelector(db().prisma, {
        labels: {},
        process: { pod: { namespace: 'payments' } },
      });
      assert.equal(shown?.pod?.name, 'ledger-0', 'the preview shows the pod it matched');
    });

    test('host processes (and containers without pod facts) never match pod terms', async () => {
      await seed();
      const inPods = await targets({ labels: {}, process: { pod: {} } });
      assert.deepEqual(inPods, ['node-1:200', 'node-1:201', 'node-1:202', 'node-1:205', 'node-2:300']);
      assert.deepEqual(
        await targets({ labels: {}, process: { cmdlineContains: '--worker=203', pod: {} } }),
        [],
      );
      assert.deepEqual(await targets({ labels: {}, process: { pod: { labels: {} } } }), inPods);
    });

    test('the fleet filters by namespace and workload, orders by pod and lists both as choices', async () => {
      await seed();
      const { prisma } = db();
      assert.deepEqual(pids(await fleetView(prisma, { namespace: 'shop' }, here)), [
        'node-1:200',
        'node-1:201',
        'node-2:300',
      ]);
      assert.deepEqual(pids(await fleetView(prisma, { workload: 'Job/nightly' }, here)), ['node-1:205']);
      assert.deepEqual(pids(await fleetView(prisma, { namespace: 'payments', workload: 'ledger' }, here)), [
        'node-1:202',
      ]);
      assert.deepEqual(
        pids(await fleetView(prisma, { q: 'ledger-0' }, here)),
        ['node-1:202'],
        'pod name is searchable',
      );
      const none = await fleetView(prisma, { namespace: 'nowhere' }, here);
      assert.deepEqual([none.page.total, none.hosts.length], [0, 0], 'no empty hosts under a pod filter');
      const all = await fleetView(prisma, { order: 'pod', q: 'node' }, here);
      assert.deepEqual(all.namespaces, ['jobs', 'payments', 'shop']);
      assert.deepEqual(all.workloads, [
        'jobs/Job/nightly',
        'payments/StatefulSet/ledger',
        'shop/Deployment/checkout',
      ]);
      const ordered = all.hosts.flatMap((h) => h.processes).length;
      assert.equal(ordered, 7);
    });

    test('attacker: pod labels and namespaces an agent reports never pick the policy', async () => {
      const { admin, node } = await seed();
      const { prisma } = db();
      const op = await seedUser(prisma, 'operator');
      const sandbox = `sb${Math.random().toString(36).slice(2, 8)}`;
      const lax = await seedPolicy(prisma, {
        name: `sandbox-${sandbox}`,
        matchLabels: { sandbox },
        priority: 500,
        requiredApprovals: 0,
        allowCustomCode: true,
      });
      await seedPolicy(prisma, {
        name: `prod-${sandbox}`,
        matchLabels: { env: 'prod' },
        priority: 100,
        requiredApprovals: 2,
        allowCustomCode: false,
      });
      // The agent on the prod host claims, in every pod fact it reports, to be the sandbox.
      await applyDelta(prisma, node, {
        upserted: [
          podProcess(250, {
            name: 'evil',
            namespace: sandbox,
            containerName: sandbox,
            labels: { sandbox, env: 'dev' },
            workload: { kind: 'Deployment', name: sandbox },
          }),
        ],
        removed: [],
        scannedAt: new Date().toISOString(),
      });
      const bySelector = {
        type: 'selector' as const,
        labels: {},
        process: { pod: { namespace: sandbox, labels: { sandbox } } },
      };
      const preview = await previewPolicy(prisma, { targets: bySelector, kind: 'custom' });
      assert.equal(preview.matched, 1);
      assert.equal(preview.policy?.name, `prod-${sandbox}`, 'the host labels decide');
      assert.deepEqual([preview.requiredApprovals, preview.customDenied], [2, true]);
      for (const t of [
        bySelector,
        { type: 'processes' as const, processes: [{ agentId: node, pid: 250, startTime: '1250' }] },
      ]) {
        await assert.rejects(
          createRequest(prisma, op, {
            kind: 'custom',
            code: 'print(1)',
            targets: t,
            reason: 'attacker: pod labels claim the sandbox',
          }),
          (e) => e instanceof AppError && e.code === 'POLICY_DENIED',
          `${t.type}: the prod policy refuses custom code, whatever the pod says`,
        );
      }
      // Control: a host whose join token says sandbox does fall under the lax policy.
      const real = await seedAgent(prisma, admin, { labels: { sandbox }, processes: [pyProcess(260)] });
      const { result: ok } = await createRequest(prisma, op, {
        kind: 'custom',
        code: 'print(1)',
        targets: { type: 'processes', processes: [{ agentId: real.id, pid: 260, startTime: '1260' }] },
        reason: 'control: the real sandbox host',
      });
      assert.equal(ok.policyId, lax.id);
    });
  },
);
