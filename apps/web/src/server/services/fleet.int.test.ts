import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PythonProcess } from '@pyreach/protocol/inventory';
import { getAgent, listJoinTokens, markConnected } from './agents';
import { planExecutions, sendWave } from './dispatch';
import { AppError } from './errors';
import { decideChange } from './governance';
import { APPLIERS } from './governance-apply';
import { applyDelta, fleetView, matchSelector, processDetail, type Selector } from './inventory';
import { labelsOfProcesses, setAgentNamespaceLabels, signUnsignedDeclarations } from './namespace-labels';
import { createRequest, getRequest, previewPolicy, reviewRequest } from './requests';
import {
  describeEachDatabase,
  testKeyPair,
  pyProcess,
  seedAgent,
  seedPolicy,
  seedUser,
  type UserActor,
} from '../../../../../test/support/services';

const here = () => false;
const ATTEST = testKeyPair();
const KEYS = { signing: testKeyPair(), attestation: ATTEST };
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
          attestation: ATTEST,
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
          attestation: ATTEST,
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
      const lax = await seedPolicy(
        prisma,
        {
          name: `sandbox-${sandbox}`,
          matchLabels: { sandbox },
          priority: 500,
          requiredApprovals: 0,
          allowCustomCode: true,
        },
        ATTEST,
      );
      await seedPolicy(
        prisma,
        {
          name: `prod-${sandbox}`,
          matchLabels: { env: 'prod' },
          priority: 100,
          requiredApprovals: 2,
          allowCustomCode: false,
        },
        ATTEST,
      );
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
      const preview = await previewPolicy(prisma, { targets: bySelector, kind: 'custom' }, ATTEST);
      assert.equal(preview.matched, 1);
      assert.equal(preview.policy?.name, `prod-${sandbox}`, 'the host labels decide');
      assert.deepEqual([preview.requiredApprovals, preview.customDenied], [2, true]);
      for (const t of [
        bySelector,
        { type: 'processes' as const, processes: [{ agentId: node, pid: 250, startTime: '1250' }] },
      ]) {
        await assert.rejects(
          createRequest(
            prisma,
            op,
            {
              kind: 'custom',
              code: 'print(1)',
              targets: t,
              reason: 'attacker: pod labels claim the sandbox',
            },
            new Date(),
            ATTEST,
          ),
          (e) => e instanceof AppError && e.code === 'POLICY_DENIED',
          `${t.type}: the prod policy refuses custom code, whatever the pod says`,
        );
      }
      // Control: a host whose join token says sandbox does fall under the lax policy.
      const real = await seedAgent(prisma, admin, { labels: { sandbox }, processes: [pyProcess(260)] });
      const { result: ok } = await createRequest(
        prisma,
        op,
        {
          kind: 'custom',
          code: 'print(1)',
          targets: { type: 'processes', processes: [{ agentId: real.id, pid: 260, startTime: '1260' }] },
          reason: 'control: the real sandbox host',
        },
        new Date(),
        ATTEST,
      );
      assert.equal(ok.policyId, lax.id);
    });

    // ---- an admin's namespace declaration: policy labels per process (issue 14 item 3, last part) -------------

    /**
     * Two agents on hosts labelled zone=<u>: A's token declares payments → env=prod (2 approvals, no custom code)
     * and sandbox → env=dev (0 approvals); B's token declares nothing. Both report pods in payments and sandbox.
     */
    let declared: Promise<Awaited<ReturnType<typeof declaredWorld>>> | undefined;
    async function declaredWorld() {
      const { admin } = await seed();
      const { prisma } = db();
      const zone = `z${Math.random().toString(36).slice(2, 8)}`;
      const base = await seedPolicy(
        prisma,
        {
          name: `base-${zone}`,
          matchLabels: { zone },
          priority: 300,
          requiredApprovals: 1,
          allowCustomCode: true,
        },
        ATTEST,
      );
      const prod = await seedPolicy(
        prisma,
        {
          name: `prod-${zone}`,
          matchLabels: { zone, env: 'prod' },
          priority: 400,
          requiredApprovals: 2,
          allowCustomCode: false,
        },
        ATTEST,
      );
      const dev = await seedPolicy(
        prisma,
        {
          name: `dev-${zone}`,
          matchLabels: { zone, env: 'dev' },
          priority: 400,
          requiredApprovals: 0,
          allowCustomCode: true,
        },
        ATTEST,
      );
      const pods = (first: number) => [
        podProcess(first, { name: `ledger-${first}`, namespace: 'payments' }),
        podProcess(first + 1, { name: `toy-${first}`, namespace: 'sandbox' }),
        podProcess(first + 2, { name: `made-up-${first}`, namespace: `inv-${zone}` }),
        pyProcess(first + 3),
      ];
      const a = await seedAgent(prisma, admin, {
        labels: { zone },
        namespaceLabels: { payments: { env: 'prod' }, sandbox: { env: 'dev' } },
        attestation: ATTEST,
        processes: pods(600),
      });
      const b = await seedAgent(prisma, admin, {
        labels: { zone },
        processes: pods(700),
        attestation: ATTEST,
      });
      const op = await seedUser(prisma, 'operator');
      return { zone, base, prod, dev, a: a.id, b: b.id, op, admin };
    }
    const world = () => (declared ??= declaredWorld());
    const ref = (agentId: string, pid: number) => ({ agentId, pid, startTime: String(1000 + pid) });
    const file = (w: Awaited<ReturnType<typeof world>>, pids: [string, number][], kind = 'custom') =>
      createRequest(
        db().prisma,
        w.op,
        {
          ...(kind === 'custom'
            ? { kind: 'custom' as const, code: 'print(1)' }
            : {
                kind: 'library' as const,
                scriptId: 'logging.set_level',
                params: { logger: 'demo.orders', level: 'DEBUG' },
              }),
          targets: { type: 'processes', processes: pids.map(([id, pid]) => ref(id, pid)) },
          reason: 'namespace policy',
        },
        new Date(),
        ATTEST,
      ).then((r) => r.result);

    test('a namespace declared on the join token decides the policy per process, never pod facts alone', async () => {
      const w = await world();
      const { prisma } = db();
      const token = await prisma.joinToken.findFirstOrThrow({
        where: { agents: { some: { id: w.a } } },
      });
      // Declaring sandbox → env=dev lowers the policy there (1 → 0 approvals): a governance change. With one
      // admin in this database it applies, flagged unconfirmed.
      const change = await prisma.governanceChange.findFirstOrThrow({ where: { subjectId: token.id } });
      assert.equal(change.kind, 'namespace_labels.set');
      assert.equal(change.state, 'unconfirmed');
      assert.ok(
        change.reasons.some((r) => r.includes('namespace sandbox')),
        change.reasons.join('\n'),
      );
      assert.ok(!change.reasons.some((r) => r.includes('namespace payments')), 'payments only tightens');
      assert.deepEqual(token.namespaceLabels, { payments: { env: 'prod' }, sandbox: { env: 'dev' } });

      const labels = await labelsOfProcesses(prisma, ATTEST, [
        ref(w.a, 600),
        ref(w.a, 601),
        ref(w.a, 602),
        ref(w.a, 603),
        ref(w.b, 700),
        ref(w.b, 701),
      ]);
      assert.deepEqual(labels, [
        { zone: w.zone, env: 'prod' },
        { zone: w.zone, env: 'dev' },
        { zone: w.zone }, // attacker: a namespace nobody declared for this agent adds nothing
        { zone: w.zone }, // a host process
        { zone: w.zone }, // attacker: agent B reports payments too, but its token declares nothing
        { zone: w.zone },
      ]);
      // Filing: two processes on the same host, two policies.
      await assert.rejects(
        file(w, [[w.a, 600]]),
        (e) => e instanceof AppError && e.code === 'POLICY_DENIED',
        'payments (env=prod) forbids custom code',
      );
      const sandbox = await file(w, [[w.a, 601]]);
      assert.equal(sandbox.policyId, w.dev.id);
      assert.equal(sandbox.requiredApprovals, 1, 'dev says 0; custom code still needs one person');
      const lib = await file(w, [[w.a, 600]], 'library');
      assert.equal([lib.policyId, lib.requiredApprovals].join(), [w.prod.id, 2].join());
      const both = await file(
        w,
        [
          [w.a, 600],
          [w.a, 601],
        ],
        'library',
      );
      assert.equal(both.requiredApprovals, 2, 'the strictest of the two processes');
      const onB: string[] = [];
      for (const [agent, pid] of [
        [w.a, 602],
        [w.b, 700],
        [w.b, 701],
      ] as const) {
        const r = await file(w, [[agent, pid]]);
        assert.equal(r.policyId, w.base.id, `${agent}:${pid} falls under its host's labels alone`);
        if (agent === w.b) onB.push(r.id);
      }
      // A's declaration rests on one admin's word: what targets A says so; B's requests do not.
      assert.equal((await getRequest(prisma, sandbox.id)).unconfirmedGovernance, true);
      assert.equal((await getRequest(prisma, onB[0]!)).unconfirmedGovernance, false);
      // The preview says the same, by selector: payments on both hosts → the strictest (A's prod).
      const preview = await previewPolicy(
        prisma,
        {
          targets: {
            type: 'selector',
            labels: { zone: w.zone },
            process: { pod: { namespace: 'payments' } },
          },
          kind: 'custom',
        },
        ATTEST,
      );
      assert.equal(preview.matched, 2);
      assert.equal(preview.policy?.name, `prod-${w.zone}`);
      assert.equal(preview.customDenied, true);
      const onlyB = await previewPolicy(
        prisma,
        { targets: { type: 'processes', processes: [ref(w.b, 700)] }, kind: 'custom' },
        ATTEST,
      );
      assert.equal(onlyB.policy?.name, `base-${w.zone}`);
      // The token list shows the declaration; the agent shows the one in force.
      const row = (await listJoinTokens(prisma, w.admin)).find((t) => t.id === token.id);
      assert.deepEqual(row?.namespaceLabels, { payments: { env: 'prod' }, sandbox: { env: 'dev' } });
      const agentA = await getAgent(prisma, w.a);
      assert.equal(agentA.namespaceLabels, null);
      assert.deepEqual(agentA.effectiveNamespaceLabels, token.namespaceLabels);
    });

    test('attacker: an agent that moves a process into a stricter namespace after filing is re-priced at dispatch', async () => {
      const w = await world();
      const { prisma } = db();
      const ap = await seedUser(prisma, 'approver');
      const move = (pid: number, namespace: string) =>
        applyDelta(prisma, w.a, {
          upserted: [podProcess(pid, { name: `moved-${pid}`, namespace })],
          removed: [],
          scannedAt: new Date().toISOString(),
        });
      const approve = async (id: string) => {
        const r = await reviewRequest(
          prisma,
          ap,
          id,
          { decision: 'approve' },
          { authenticatedAt: new Date(), attestation: ATTEST },
        );
        assert.equal(r.result.state, 'approved');
      };
      // Filed and approved while the process is in sandbox (1 approval) …
      const custom = await file(w, [[w.a, 601]]);
      await approve(custom.id);
      const [cx] = (await planExecutions(prisma, custom.id)).result;
      // … then its agent reports it in payments: custom code is refused there, visibly, and never sent.
      await move(601, 'payments');
      assert.deepEqual((await sendWave(prisma, custom.id, KEYS, () => true)).result, []);
      const refused = await prisma.execution.findUniqueOrThrow({ where: { id: cx!.id } });
      assert.deepEqual([refused.state, refused.errorCode], ['refused', 'POLICY_DENIED']);
      // A library script waits for the second approval payments needs (honest state), not sent under sandbox's.
      await move(601, 'sandbox');
      const lib = await file(w, [[w.a, 601]], 'library');
      assert.equal(lib.requiredApprovals, 1);
      await approve(lib.id);
      const [lx] = (await planExecutions(prisma, lib.id)).result;
      await move(601, 'payments');
      assert.deepEqual((await sendWave(prisma, lib.id, KEYS, () => true)).result, []);
      const held = await prisma.execution.findUniqueOrThrow({ where: { id: lx!.id } });
      assert.deepEqual([held.state, held.errorCode], ['awaiting_approval', 'APPROVAL_REQUIRED']);
      // Control: back in sandbox, the same request's execution goes out with its one approval.
      await move(601, 'sandbox');
      const [job] = (await sendWave(prisma, lib.id, KEYS, () => true)).result;
      assert.ok(job, 'sent under the policy its namespace carries now');
    });

    test('governance: an agent override that loosens waits for a second admin; one that tightens applies', async () => {
      const w = await world();
      const { prisma } = db();
      const other = await seedUser(prisma, 'admin', 'second admin');
      const set = (actor: UserActor, body: Parameters<typeof setAgentNamespaceLabels>[3]) =>
        setAgentNamespaceLabels(prisma, actor, w.b, body, ATTEST).then((r) => r.result);
      // Tightening: payments → env=prod on B applies at once, audited, no change to confirm.
      const tight = await set(w.admin, { namespaceLabels: { payments: { env: 'prod' } } });
      assert.equal(tight.change, null);
      assert.deepEqual(await labelsOfProcesses(prisma, ATTEST, [ref(w.b, 700)]), [
        { zone: w.zone, env: 'prod' },
      ]);
      // Loosening: sandbox → env=dev (0 approvals) is pending and changes nothing until another admin confirms.
      const loose = await set(w.admin, {
        namespaceLabels: { payments: { env: 'prod' }, sandbox: { env: 'dev' } },
      });
      assert.equal(loose.change?.state, 'pending');
      assert.deepEqual(await labelsOfProcesses(prisma, ATTEST, [ref(w.b, 701)]), [{ zone: w.zone }]);
      await assert.rejects(
        decideChange(
          prisma,
          w.admin,
          loose.change!.id,
          { decision: 'confirm' },
          { authenticatedAt: new Date(), now: new Date(), attestation: ATTEST },
          APPLIERS,
        ),
        (e) => e instanceof AppError && e.code === 'SELF_APPROVAL',
      );
      await decideChange(
        prisma,
        other,
        loose.change!.id,
        { decision: 'confirm' },
        { authenticatedAt: new Date(), now: new Date(), attestation: ATTEST },
        APPLIERS,
      );
      assert.deepEqual(await labelsOfProcesses(prisma, ATTEST, [ref(w.b, 701)]), [
        { zone: w.zone, env: 'dev' },
      ]);
      const audited = await prisma.auditEvent.findMany({
        where: { action: 'namespace_labels.set', subjectId: w.b },
        orderBy: { seq: 'asc' },
      });
      assert.equal(audited.length, 2);
      assert.equal((audited[1]!.data as { changeId?: string }).changeId, loose.change!.id);
      // Bad input names the field; a non-admin may not declare.
      await assert.rejects(
        set(w.admin, { namespaceLabels: { Payments_1: { env: 'prod' } } }),
        (e) => e instanceof AppError && e.code === 'VALIDATION' && /namespaceLabels/.test(e.userMessage),
      );
      await assert.rejects(
        set(w.op, { namespaceLabels: null }),
        (e) => e instanceof AppError && e.code === 'FORBIDDEN',
      );
    });
    // ---- a database writer (issue "governance integrity"): declarations count only as the control plane signed them

    test('attacker: a database writer editing a namespace declaration (agent, join token or governance change) gets no looser policy', async () => {
      const w = await declaredWorld(); // a fresh world: this test writes behind the services' back
      const { prisma } = db();
      const denied = (what: string) => (e: unknown) =>
        e instanceof AppError &&
        e.code === 'POLICY_DENIED' &&
        /signature/.test(e.userMessage) &&
        (what === '' || e.userMessage.includes(what));
      const lib = (pid: [string, number]) => file(w, [pid], 'library');
      const confirmer = await seedUser(prisma, 'admin', 'confirming admin');
      const confirm = (id: string) =>
        decideChange(
          prisma,
          confirmer,
          id,
          { decision: 'confirm' },
          { authenticatedAt: new Date(), now: new Date(), attestation: ATTEST },
          APPLIERS,
        );
      // Where other admins exist already (the earlier tests), A's token's loosening declaration waits: confirm it.
      const minted = await prisma.joinToken.findFirstOrThrow({ where: { agents: { some: { id: w.a } } } });
      for (const c of await prisma.governanceChange.findMany({
        where: { subjectId: minted.id, state: 'pending' },
      }))
        await confirm(c.id);
      // Control: payments on A (its token's signed declaration, env=prod) needs 2 approvals.
      assert.equal((await lib([w.a, 600])).requiredApprovals, 2);
      const approver = await seedUser(prisma, 'approver');
      const approved = await lib([w.a, 601]); // sandbox (env=dev): one approval
      await reviewRequest(
        prisma,
        approver,
        approved.id,
        { decision: 'approve' },
        { authenticatedAt: new Date(), attestation: ATTEST },
      );
      const [planned] = (await planExecutions(prisma, approved.id)).result;

      // 1. The agent's column: the writer gives A its own declaration moving payments to env=dev (1 approval).
      await prisma.agent.update({
        where: { id: w.a },
        data: { namespaceLabels: { payments: { env: 'dev' }, sandbox: { env: 'dev' } } },
      });
      await assert.rejects(lib([w.a, 600]), denied(w.a), 'filing: not priced by the forged declaration');
      await assert.rejects(
        previewPolicy(
          prisma,
          {
            targets: { type: 'processes', processes: [ref(w.a, 600)] },
            kind: 'library',
            scriptId: 'logging.set_level',
          },
          ATTEST,
        ),
        denied(w.a),
      );
      // The admin API says why (the agent's row), where a signed one says nothing.
      assert.match((await getAgent(prisma, w.a, ATTEST)).namespaceLabelsUntrusted ?? '', /signature/);
      assert.equal((await getAgent(prisma, w.b, ATTEST)).namespaceLabelsUntrusted, null);
      // A host process on A is priced by its host's labels, which no declaration touches.
      assert.equal((await lib([w.a, 603])).policyId, w.base.id);
      // Dispatch: the approved request's execution is refused (audited, saying why), never sent.
      assert.deepEqual((await sendWave(prisma, approved.id, KEYS, () => true)).result, []);
      const refused = await prisma.execution.findUniqueOrThrow({ where: { id: planned!.id } });
      assert.deepEqual([refused.state, refused.errorCode], ['refused', 'POLICY_DENIED']);
      assert.match(refused.errorMessage ?? '', /signature/);
      const audit = await prisma.auditEvent.findFirstOrThrow({
        where: { action: 'execution.dispatch_refuse', subjectId: planned!.id },
      });
      assert.match(String((audit.data as { reason?: string }).reason), /signature/);
      // Clearing the column again (NULL, "follow the token") with A's enrolment signature restores its token's.
      const enrolled = await prisma.agent.findUniqueOrThrow({ where: { id: w.a } });
      await prisma.$executeRaw`UPDATE "agent" SET "namespaceLabels" = NULL WHERE "id" = ${w.a}`;
      assert.equal((await lib([w.a, 600])).requiredApprovals, 2, 'the signed NULL: the token decides again');
      // The writer strips B's signed override (payments → env=prod, set by an admin) back to NULL: refused, not
      // priced by B's token (which declares nothing, so 1 approval) — nor by A's signature copied onto B.
      await setAgentNamespaceLabels(
        prisma,
        w.admin,
        w.b,
        { namespaceLabels: { payments: { env: 'prod' } } },
        ATTEST,
      );
      assert.equal((await lib([w.b, 700])).requiredApprovals, 2);
      await prisma.$executeRaw`UPDATE "agent" SET "namespaceLabels" = NULL WHERE "id" = ${w.b}`;
      await assert.rejects(lib([w.b, 700]), denied(w.b));
      await prisma.agent.update({
        where: { id: w.b },
        data: { namespaceLabelsAttestation: enrolled.namespaceLabelsAttestation },
      });
      await assert.rejects(lib([w.b, 700]), denied(w.b));
      // An admin declaring again (here: follow the token) signs it: B is priced by its token's declaration.
      await setAgentNamespaceLabels(prisma, w.admin, w.b, { namespaceLabels: null }, ATTEST);
      assert.equal((await getAgent(prisma, w.b, ATTEST)).namespaceLabelsUntrusted, null);
      assert.equal((await lib([w.b, 700])).policyId, w.base.id);

      // 2. The join token's column: the writer moves payments to env=dev on A's token.
      const token = await prisma.joinToken.findFirstOrThrow({ where: { agents: { some: { id: w.a } } } });
      await prisma.joinToken.update({
        where: { id: token.id },
        data: { namespaceLabels: { payments: { env: 'dev' }, sandbox: { env: 'dev' } } },
      });
      await assert.rejects(lib([w.a, 600]), denied(token.id));
      // … or points A at another token (B's, whose declaration is signed): A's signature names its own token.
      await prisma.joinToken.update({
        where: { id: token.id },
        data: { namespaceLabels: token.namespaceLabels ?? {} },
      });
      assert.equal((await lib([w.a, 600])).requiredApprovals, 2, 'the signed value again');
      const bToken = await prisma.agent.findUniqueOrThrow({
        where: { id: w.b },
        select: { joinTokenId: true },
      });
      await prisma.agent.update({ where: { id: w.a }, data: { joinTokenId: bToken.joinTokenId } });
      await assert.rejects(lib([w.a, 600]), denied(w.a));
      await prisma.agent.update({ where: { id: w.a }, data: { joinTokenId: token.id } });

      // 3. The governance change: a loosening on A (payments → env=dev) waits for a second admin.
      const other = confirmer;
      const { result } = await setAgentNamespaceLabels(
        prisma,
        w.admin,
        w.a,
        { namespaceLabels: { sandbox: { env: 'dev' } } },
        ATTEST,
      );
      assert.equal(result.change?.state, 'pending');
      // The writer edits the pending change's value (payments too) before the second admin confirms: refused,
      // nothing applied.
      await prisma.governanceChange.update({
        where: { id: result.change!.id },
        data: {
          data: {
            before: null,
            after: { payments: { env: 'dev' }, sandbox: { env: 'dev' } },
            host: { zone: w.zone },
          },
        },
      });
      await assert.rejects(
        decideChange(
          prisma,
          other,
          result.change!.id,
          { decision: 'confirm' },
          { authenticatedAt: new Date(), now: new Date(), attestation: ATTEST },
          APPLIERS,
        ),
        (e) => e instanceof AppError && e.code === 'INVALID_STATE',
      );
      assert.equal((await lib([w.a, 600])).requiredApprovals, 2);
      // … then flips it to confirmed and writes what it says into the column: still not priced by it.
      await prisma.governanceChange.update({
        where: { id: result.change!.id },
        data: { state: 'confirmed', decidedById: other.id, decidedAt: new Date() },
      });
      assert.equal((await lib([w.a, 600])).requiredApprovals, 2, 'a flipped state applies nothing');
      await prisma.agent.update({
        where: { id: w.a },
        data: { namespaceLabels: { payments: { env: 'dev' }, sandbox: { env: 'dev' } } },
      });
      await assert.rejects(lib([w.a, 600]), denied(w.a));
    });
    test('upgrade: a declaration from before signing prices no pod until the operator signs it; a forged one stays refused', async () => {
      const w = await world();
      const { prisma } = db();
      // Enrolled without the key: its token's {} and its NULL carry no signature, like rows from before signing.
      const legacy = await seedAgent(prisma, w.admin, {
        labels: { zone: w.zone },
        processes: [podProcess(800, { name: 'legacy-800', namespace: 'payments' }), pyProcess(801)],
      });
      const forged = await seedAgent(prisma, w.admin, {
        labels: { zone: w.zone },
        processes: [podProcess(810, { name: 'forged-810', namespace: 'payments' })],
        attestation: ATTEST,
      });
      await prisma.agent.update({
        where: { id: forged.id },
        data: { namespaceLabels: { payments: { env: 'dev' } } },
      });
      const untrusted = (e: unknown) => e instanceof AppError && e.code === 'POLICY_DENIED';
      await assert.rejects(file(w, [[legacy.id, 800]], 'library'), untrusted);
      assert.equal((await file(w, [[legacy.id, 801]], 'library')).policyId, w.base.id, 'a host process');
      const signed = await signUnsignedDeclarations(
        prisma,
        { type: 'system', name: 'sign-namespace-labels' },
        ATTEST,
      );
      assert.ok(signed.agents.includes(legacy.id) && !signed.agents.includes(forged.id));
      assert.equal((await file(w, [[legacy.id, 800]], 'library')).policyId, w.base.id);
      await assert.rejects(
        file(w, [[forged.id, 810]], 'library'),
        untrusted,
        'a wrong signature is not re-signed',
      );
      const audit = await prisma.auditEvent.findFirstOrThrow({
        where: { action: 'namespace_labels.sign_unsigned' },
        orderBy: { seq: 'desc' },
      });
      assert.ok(JSON.stringify(audit.data).includes(legacy.id));
    });
    test('pricing many processes on many agents reads the agents and their namespaces once each kind, not per agent', async () => {
      const w = await world();
      const { prisma } = db();
      const reads = new Map<string, number>();
      // The real client, counting the calls labelsOfProcesses makes on each model.
      const counting = new Proxy(prisma, {
        get(target, model: string) {
          const delegate = Reflect.get(target, model) as unknown;
          if (model !== 'agent' && model !== 'pythonProcess') return delegate;
          return new Proxy(delegate as object, {
            get(d, method: string) {
              const f = Reflect.get(d, method) as unknown;
              if (typeof f !== 'function') return f;
              return (...args: unknown[]) => {
                reads.set(model, (reads.get(model) ?? 0) + 1);
                return (f as (...a: unknown[]) => unknown).apply(d, args);
              };
            },
          });
        },
      });
      const refs = [600, 601, 602, 603].flatMap((pid) => [ref(w.a, pid), ref(w.b, pid + 100)]);
      const labels = await labelsOfProcesses(counting, ATTEST, refs);
      assert.equal(labels.length, 8);
      assert.deepEqual(Object.fromEntries(reads), { agent: 1, pythonProcess: 1 });
    });
  },
);
