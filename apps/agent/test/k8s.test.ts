/**
 * The pod watch against an HTTPS server that speaks the Kubernetes list/watch protocol for pods
 * (test/support/kube-api.ts). No cluster can run on these machines (no container runtime, no kubelet), so
 * a real API server cannot be used; the server here sends what kube-apiserver sends: paginated PodLists,
 * chunked watch streams with ADDED/MODIFIED/DELETED/BOOKMARK events, ERROR 410 for an expired version.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { ContainerIdentity, MAX_POD_LABELS } from '@pyreach/protocol/inventory';
import { AgentConfig } from '../src/config';
import { KubeApi } from '../src/k8s/client';
import { withPodFacts } from '../src/k8s/enrich';
import { startKubernetes } from '../src/k8s/index';
import { PodWatcher } from '../src/k8s/pods';
import { FakeKubeApi, pod } from '../../../test/support/kube-api';

const log = pino({ level: 'silent' });
const NODE = 'node-a';
const hex = (): string => randomBytes(32).toString('hex');
const until = async (cond: () => boolean, what: string, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const api = new FakeKubeApi();
const watchers: PodWatcher[] = [];
/** A new watcher; the previous ones are stopped first, so the server's open watches are this one's. */
async function watcher(
  extra: Partial<ConstructorParameters<typeof PodWatcher>[0]> = {},
): Promise<PodWatcher> {
  for (const old of watchers.splice(0)) await old.stop();
  await until(() => api.openWatches === 0, 'old watches closed');
  const w = new PodWatcher({
    api: new KubeApi({ server: api.url, tokenFile: api.tokenFile, caFile: api.pki.caFile }),
    nodeName: NODE,
    log,
    pageSize: 2,
    backoff: { minMs: 20, maxMs: 100 },
    ...extra,
  });
  watchers.push(w);
  w.start();
  return w;
}

before(() => api.start());
after(async () => {
  for (const w of watchers) await w.stop();
  await api.stop();
});

describe('pod watch: list', () => {
  const checkoutId = hex();
  const sidecarId = hex();
  const staticHash = randomBytes(16).toString('hex');
  const checkoutUid = randomUUID();
  const dbUid = randomUUID();
  const bareUid = randomUUID();
  before(() => {
    api.add(
      pod('checkout-7d9f8c6b5-x2k4p', {
        namespace: 'shop',
        uid: checkoutUid,
        node: NODE,
        labels: { app: 'checkout', 'pod-template-hash': '7d9f8c6b5', 'app.kubernetes.io/part-of': 'shop' },
        owner: { kind: 'ReplicaSet', name: 'checkout-7d9f8c6b5' },
        containers: [
          { name: 'web', id: checkoutId },
          { name: 'istio-proxy', id: sidecarId },
        ],
      }),
    );
    api.add(
      pod('db-0', { namespace: 'shop', uid: dbUid, node: NODE, owner: { kind: 'StatefulSet', name: 'db' } }),
    );
    api.add(
      pod('etcd-node-a', {
        namespace: 'kube-system',
        uid: randomUUID(),
        node: NODE,
        annotations: { 'kubernetes.io/config.mirror': staticHash },
        owner: { kind: 'Node', name: NODE },
      }),
    );
    api.add(pod('other-node-pod', { uid: randomUUID(), node: 'node-b' }));
    api.add(pod('bare', { uid: bareUid, node: NODE }));
  });

  it("lists only this node's pods, page by page, with the ServiceAccount token over the pinned CA", async () => {
    const w = await watcher();
    await until(() => w.state === 'synced', 'the first list');
    assert.equal(w.size, 4);
    const lists = api.requests.filter((r) => !r.query.has('watch'));
    assert.ok(lists.length >= 2, 'paginated with limit + continue');
    for (const r of api.requests) {
      assert.equal(r.query.get('fieldSelector'), `spec.nodeName=${NODE}`);
      assert.equal(r.authorization, `Bearer ${api.token}`);
    }
    assert.equal(lists[0]!.query.get('limit'), '2');
    assert.equal(lists[1]!.query.get('continue'), '2');
  });

  it('knows each container by id, with the pod, its labels and its Deployment (from the ReplicaSet name)', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced', 'synced');
    const hit = w.byContainerId(sidecarId);
    assert.equal(hit?.container.name, 'istio-proxy');
    assert.equal(hit?.container.runtime, 'containerd');
    assert.equal(hit?.pod.facts.name, 'checkout-7d9f8c6b5-x2k4p');
    assert.equal(hit?.pod.facts.namespace, 'shop');
    assert.equal(hit?.pod.facts.nodeName, NODE);
    assert.deepEqual(hit?.pod.facts.workload, { kind: 'Deployment', name: 'checkout' });
    assert.equal(hit?.pod.facts.labels.app, 'checkout');
    assert.deepEqual(w.byPodUid(checkoutUid)?.facts.name, 'checkout-7d9f8c6b5-x2k4p');
  });

  it("reports other owners as they are, a static pod by its manifest hash, and a bare pod's workload as none", async () => {
    const w = await watcher();
    await until(() => w.state === 'synced', 'synced');
    assert.deepEqual(w.byPodUid(dbUid)?.facts.workload, { kind: 'StatefulSet', name: 'db' });
    assert.equal(
      w.byPodUid(staticHash)?.facts.name,
      'etcd-node-a',
      'the cgroup of a static pod carries the hash',
    );
    assert.deepEqual(w.byPodUid(staticHash)?.facts.workload, { kind: 'Node', name: NODE });
    assert.equal(w.byPodUid(bareUid)?.facts.workload, null);
  });
});

describe('pod watch: events', () => {
  it('applies ADDED, MODIFIED and DELETED from the watch and resumes from the list version', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced', 'synced');
    const listRv = w.resourceVersion;
    const watch = api.requests.filter((r) => r.query.get('watch') === '1').at(-1);
    await until(() => api.openWatches > 0, 'an open watch');
    const uid = randomUUID();
    const id = hex();
    api.add(pod('new-pod', { uid, node: NODE, containers: [{ name: 'app' }] }));
    await until(() => w.byPodUid(uid) !== null, 'the ADDED pod');
    assert.equal(w.byContainerId(id), null, 'no container id yet (not started)');
    api.modify(pod('new-pod', { uid, node: NODE, containers: [{ name: 'app', id, runtime: 'cri-o' }] }));
    await until(() => w.byContainerId(id) !== null, 'the MODIFIED container id');
    assert.equal(w.byContainerId(id)?.container.runtime, 'cri-o');
    api.remove(uid);
    await until(() => w.byPodUid(uid) === null, 'the DELETED pod');
    assert.equal(w.byContainerId(id), null);
    const first = api.requests.filter((r) => r.query.get('watch') === '1');
    assert.ok(
      first.some((r) => r.query.get('resourceVersion') === listRv),
      'the first watch starts at the list version',
    );
    assert.equal(watch?.query.get('allowWatchBookmarks'), 'true');
    assert.equal(w.resourceVersion, String(api.resourceVersion));
  });

  it('moves its resourceVersion on a BOOKMARK without changing any pod', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    const size = w.size;
    const before = w.stats.bookmarks;
    api.bookmark();
    await until(() => w.stats.bookmarks > before, 'the bookmark');
    assert.equal(w.resourceVersion, String(api.resourceVersion));
    assert.equal(w.size, size);
  });

  it('resumes a watch the server ended from its last version, without listing again', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    const lists = w.stats.lists;
    const watches = w.stats.watches;
    api.endWatches();
    const uid = randomUUID();
    api.add(pod('while-reconnecting', { uid, node: NODE }));
    await until(() => w.byPodUid(uid) !== null, 'the pod added between two watches');
    assert.equal(w.stats.lists, lists, 'no re-list');
    assert.ok(w.stats.watches > watches);
  });

  it('lists again after an ERROR 410 event (version too old) and sees what changed meanwhile', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    const lists = w.stats.lists;
    const uid = randomUUID();
    api.compact();
    api.add(pod('after-compaction', { uid, node: NODE }));
    api.compact();
    api.expireWatches();
    await until(() => w.stats.lists > lists && w.state === 'synced', 're-list');
    assert.ok(w.stats.relistsAfterGone >= 1);
    assert.ok(w.byPodUid(uid), 'the re-list has the pod');
  });

  it('lists again after an HTTP 410 Gone on the watch request', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    const gone = w.stats.relistsAfterGone;
    api.goneAsHttp = true;
    try {
      // A change this node's watch does not see moves the version; compaction then puts the watcher's
      // version out of the window, so its next watch request is answered 410.
      api.add(pod('elsewhere-' + randomBytes(3).toString('hex'), { uid: randomUUID(), node: 'node-b' }));
      api.compact();
      api.endWatches();
      await until(() => w.stats.relistsAfterGone > gone && w.state === 'synced', 're-list after HTTP 410');
    } finally {
      api.goneAsHttp = false;
    }
  });
});

describe('pod watch: failures', () => {
  it('reconnects with backoff through an outage and says why meanwhile', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    api.failWith = 500;
    api.endWatches();
    await until(
      () => w.state === 'resyncing' && (w.lastError ?? '').includes('HTTP 500'),
      'the failure noted',
    );
    const errors = w.stats.errors;
    await until(() => w.stats.errors >= errors + 2, 'retries');
    api.failWith = null;
    const uid = randomUUID();
    api.add(pod('after-outage', { uid, node: NODE }));
    await until(() => w.byPodUid(uid) !== null, 'recovered');
  });

  it('names the missing RBAC grant when the API answers 403', async () => {
    api.failWith = 403;
    try {
      const w = await watcher();
      await until(() => (w.lastError ?? '').includes('get/list/watch on pods'), 'the RBAC hint');
      assert.equal(w.size, 0);
    } finally {
      api.failWith = null;
    }
  });

  it('re-reads a rotated ServiceAccount token on the next request', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    api.rotateToken('test-sa-token-2');
    api.endWatches();
    const uid = randomUUID();
    api.add(pod('after-rotation', { uid, node: NODE }));
    await until(() => w.byPodUid(uid) !== null, 'watching with the new token');
    assert.equal(api.requests.at(-1)?.authorization, 'Bearer test-sa-token-2');
  });

  it('skips a pod object it does not understand instead of failing the watch', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced' && api.openWatches > 0, 'watching');
    const broken = pod('broken', { uid: randomUUID(), node: NODE });
    (broken.metadata as unknown as { name: number }).name = 42;
    api.add(broken);
    const uid = randomUUID();
    api.add(pod('fine', { uid, node: NODE }));
    await until(() => w.byPodUid(uid) !== null, 'the next pod');
    assert.equal(w.state, 'synced');
  });
});

describe('pod facts on discovered processes', () => {
  const id = (over: Partial<ContainerIdentity> = {}): ContainerIdentity => ({
    cgroup: 'v2',
    runtime: 'containerd',
    containerId: hex(),
    podUid: randomUUID(),
    qosClass: 'burstable',
    ...over,
  });

  it('says what it could not learn without API access, and only for pods', () => {
    const out = withPodFacts(id(), { watcher: null, unavailable: 'not running in a Kubernetes pod' });
    assert.deepEqual(out.unknown, ['pod name, namespace, labels, workload: not running in a Kubernetes pod']);
    const docker = withPodFacts(id({ podUid: null, runtime: 'docker' }), { watcher: null, unavailable: 'x' });
    assert.equal(docker.unknown, undefined, 'a plain container has no pod facts to miss');
  });

  it('adds pod, namespace, container name, labels and workload; fills the runtime the cgroupfs layout lacks', async () => {
    const cid = hex();
    const uid = randomUUID();
    api.add(
      pod('api-5f6d7c8b9-abcde', {
        namespace: 'prod',
        uid,
        node: NODE,
        labels: { app: 'api', 'pod-template-hash': '5f6d7c8b9' },
        owner: { kind: 'ReplicaSet', name: 'api-5f6d7c8b9' },
        containers: [{ name: 'server', id: cid, runtime: 'containerd' }],
      }),
    );
    const w = await watcher();
    await until(() => w.byContainerId(cid) !== null, 'the pod');
    const out = withPodFacts(
      id({
        containerId: cid,
        podUid: uid,
        runtime: null,
        unknown: ['runtime: the cgroupfs layout (pod<uid>/<id>) does not name the runtime'],
      }),
      { watcher: w, unavailable: null },
    );
    assert.equal(out.runtime, 'containerd');
    assert.equal(out.unknown, undefined);
    assert.deepEqual(out.pod, {
      name: 'api-5f6d7c8b9-abcde',
      namespace: 'prod',
      uid,
      nodeName: NODE,
      containerName: 'server',
      labels: { app: 'api', 'pod-template-hash': '5f6d7c8b9' },
      workload: { kind: 'Deployment', name: 'api' },
    });
    assert.equal(ContainerIdentity.safeParse(out).success, true);
  });

  it('reports a cgroup pod uid that the API contradicts instead of trusting it', async () => {
    const cid = hex();
    const realUid = randomUUID();
    api.add(pod('real', { uid: realUid, node: NODE, containers: [{ name: 'c', id: cid }] }));
    const w = await watcher();
    await until(() => w.byContainerId(cid) !== null, 'the pod');
    const claimed = randomUUID();
    const out = withPodFacts(id({ containerId: cid, podUid: claimed }), { watcher: w, unavailable: null });
    assert.equal(out.pod?.uid, realUid, 'the API decides which pod a container id belongs to');
    assert.match(out.unknown?.[0] ?? '', new RegExp(`the cgroup says ${claimed} but the API lists`));
  });

  it('says when a pod is not among the pods the API lists on this node', async () => {
    const w = await watcher();
    await until(() => w.state === 'synced', 'synced');
    const out = withPodFacts(id(), { watcher: w, unavailable: null });
    assert.match(out.unknown?.[0] ?? '', new RegExp(`is not among the pods the API lists on node ${NODE}`));
    assert.equal(out.pod, undefined);
  });

  it(`keeps at most ${MAX_POD_LABELS} labels and says how many it left out`, async () => {
    const uid = randomUUID();
    const labels = Object.fromEntries([...Array(70)].map((_, i) => [`l${String(i).padStart(2, '0')}`, 'v']));
    api.add(pod('many-labels', { uid, node: NODE, labels }));
    const w = await watcher();
    await until(() => w.byPodUid(uid) !== null, 'the pod');
    const out = withPodFacts(id({ podUid: uid }), { watcher: w, unavailable: null });
    assert.equal(Object.keys(out.pod!.labels).length, MAX_POD_LABELS);
    assert.ok(out.unknown?.some((u) => u === `pod labels: 6 of 70 left out (at most ${MAX_POD_LABELS})`));
    assert.ok(out.unknown?.some((u) => u.startsWith('container name: container')));
    assert.equal(ContainerIdentity.safeParse(out).success, true);
  });
});

describe('pod facts the protocol cannot carry', () => {
  it('drops them with the reason instead of making the whole inventory unacceptable', async () => {
    const uid = randomUUID();
    api.add(
      pod('odd-owner', {
        uid,
        node: NODE,
        labels: { app: 'ok', 'bad key!': 'x' },
        owner: { kind: 'example.com/Weird-Kind', name: 'w' },
      }),
    );
    const w = await watcher();
    await until(() => w.byPodUid(uid) !== null, 'the pod');
    const identity: ContainerIdentity = {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: hex(),
      podUid: uid,
    };
    const out = withPodFacts(identity, { watcher: w, unavailable: null });
    assert.equal(out.pod, undefined);
    assert.ok(out.unknown?.includes('pod labels: 1 are not valid Kubernetes labels, left out'));
    assert.ok(
      out.unknown?.some((u) =>
        /^pod facts: the API's pod .* does not fit the inventory \(workload\.kind/.test(u),
      ),
    );
    assert.equal(ContainerIdentity.safeParse(out).success, true);
  });
});

describe('whether the pod watch can run here', () => {
  const cfg = (k: Record<string, unknown>): AgentConfig => AgentConfig.parse({ kubernetes: k });
  it('says why not: turned off, not in a pod, no token, no node name', () => {
    assert.match(startKubernetes(cfg({ mode: 'off' }), {}, log).unavailable ?? '', /turned off/);
    assert.match(startKubernetes(cfg({}), {}, log).unavailable ?? '', /not running in a Kubernetes pod/);
    assert.match(
      startKubernetes(
        cfg({ tokenFile: '/nonexistent/token' }),
        { serviceHost: '10.0.0.1', servicePort: '443' },
        log,
      ).unavailable ?? '',
      /no ServiceAccount token at \/nonexistent\/token/,
    );
    assert.match(
      startKubernetes(cfg({ tokenFile: api.tokenFile }), { serviceHost: '10.0.0.1', servicePort: '443' }, log)
        .unavailable ?? '',
      /PYREACH_AGENT_NODE_NAME/,
    );
  });

  it('watches with the in-cluster address, token and CA when everything is there', async () => {
    const k = startKubernetes(
      cfg({ tokenFile: api.tokenFile, caFile: api.pki.caFile, nodeName: NODE, apiServer: api.url }),
      {},
      log,
    );
    try {
      assert.equal(k.unavailable, null);
      await until(() => k.watcher?.state === 'synced', 'synced');
    } finally {
      await k.stop();
    }
  });
});
