/**
 * The real agent process as a DaemonSet runs it: it enrols on its first start from a join token file,
 * reports the node's name, finds a real CPython 3.14 target whose cgroup is laid out the way kubelet +
 * containerd lay it out, learns the target's pod from a pod watch, runs a job — and its health endpoint is
 * probed and its metrics scraped over HTTP.
 *
 * No cluster can run on these machines (no container runtime, no kubelet): the pod watch talks to an HTTPS
 * server that speaks the Kubernetes list/watch protocol (test/support/kube-api.ts), and the target's
 * cgroups are real cgroups made with the runtime's names (test/support/cgroup.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentProcess, FakeControlPlane } from '../support/agent-harness';
import { Cgroups, cgroupMount } from '../support/cgroup';
import { eventually } from '../support/eventually';
import { FakeKubeApi, pod } from '../support/kube-api';
import { startPython, type PyTarget } from '../support/python';

const NODE = 'node-test-1';
const cp = new FakeControlPlane();
const kube = new FakeKubeApi();
const cgroups = new Cgroups();
const podUid = randomUUID();
const containerId = randomBytes(32).toString('hex');
let target: PyTarget;
let agent: AgentProcess;
let base = '';
let token = '';

const metric = (text: string, name: string): number | null => {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, (c) => '\\' + c)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
};
before(async () => {
  await cp.start();
  await kube.start();
  target = await startPython('idle.py', { style: 'container' });
  const v2 = cgroupMount('cgroup2');
  const rel =
    `pyreach-test-${randomBytes(4).toString('hex')}/kubepods.slice/kubepods-burstable.slice/` +
    `kubepods-burstable-pod${podUid.replace(/-/g, '_')}.slice/cri-containerd-${containerId}.scope`;
  cgroups.move(v2, cgroups.make(v2, rel), target.pid);
  kube.add(
    pod('checkout-6c9f7b8d4-q7x2m', {
      namespace: 'shop',
      uid: podUid,
      node: NODE,
      labels: { app: 'checkout', 'pod-template-hash': '6c9f7b8d4' },
      owner: { kind: 'ReplicaSet', name: 'checkout-6c9f7b8d4' },
      containers: [{ name: 'web', id: containerId }],
    }),
  );
  agent = new AgentProcess();
  token = cp.newToken();
  const tokenFile = join(agent.stateDir, '..', `join-token-${randomBytes(4).toString('hex')}`);
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  agent.writeConfig({
    server: cp.url,
    policy: { allowRoot: true },
    hostname: NODE,
    joinTokenFile: tokenFile,
    health: { listen: '127.0.0.1:0' },
    kubernetes: { apiServer: kube.url, tokenFile: kube.tokenFile, caFile: kube.pki.caFile, nodeName: NODE },
  });
  agent.start();
  const listening = await agent.waitForLog('health server listening', 30_000);
  base = `http://127.0.0.1:${String(listening.port)}`;
});
after(async () => {
  await agent?.kill('SIGKILL');
  cgroups.cleanup();
  await target?.kill();
  cgroups.cleanup();
  await cp.stop();
  await kube.stop();
});

describe('the agent in a DaemonSet-like setting', () => {
  it("enrols on its first start from the token file and reports the node's name, never the token", async () => {
    const enrolled = await cp.until(() => [...cp.agents.values()][0], 30_000, 'an enrolled agent');
    assert.equal(enrolled.hostname, NODE);
    const snap = await cp.until(() => cp.snapshots.at(-1), 30_000, 'an inventory snapshot');
    assert.equal(snap.host.hostname, NODE);
    assert.doesNotMatch(agent.logs(), new RegExp(token), 'the token is never logged');
  });

  it('is live at once and ready when connected', async () => {
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    await eventually('ready', async () => (await fetch(`${base}/readyz`)).status === 200, 20_000);
  });

  it("reports the target's pod, namespace, container, labels and Deployment from cgroup + pod watch", async () => {
    const p = await cp.until(
      () => {
        const q = cp.processes.get(String(target.pid));
        return q?.containerIdentity?.pod ? q : undefined;
      },
      70_000,
      'the target with pod facts',
    );
    assert.equal(p.containerIdentity?.runtime, 'containerd');
    assert.equal(p.containerIdentity?.containerId, containerId);
    assert.equal(p.containerIdentity?.podUid, podUid);
    assert.equal(p.containerIdentity?.qosClass, 'burstable');
    assert.deepEqual(p.containerIdentity?.pod, {
      name: 'checkout-6c9f7b8d4-q7x2m',
      namespace: 'shop',
      uid: podUid,
      nodeName: NODE,
      containerName: 'web',
      labels: { app: 'checkout', 'pod-template-hash': '6c9f7b8d4' },
      workload: { kind: 'Deployment', name: 'checkout' },
    });
    assert.equal(p.containerIdentity?.unknown, undefined, 'nothing left unknown');
    const w = kube.requests.find((r) => r.query.get('watch') === '1');
    assert.equal(w?.query.get('fieldSelector'), `spec.nodeName=${NODE}`);
  });

  it('counts a job by outcome and times its pickup in /metrics', async () => {
    const agentId = [...cp.agents.keys()][0]!;
    const p = cp.processes.get(String(target.pid))!;
    const job = cp.job(agentId, { pid: p.pid, startTime: p.startTime }, 'result = 6 * 7\n');
    assert.equal((await cp.dispatch(cp.sign(job))).ok, true);
    const res = await cp.until(() => cp.resultOf(job.jobId), 30_000, 'the result');
    assert.equal(res.result.status, 'succeeded');
    const text = await eventually('the job in the metrics', async () => {
      const t = await (await fetch(`${base}/metrics`)).text();
      return metric(t, 'pyreach_agent_jobs_total{outcome="succeeded",code=""}') === 1 ? t : null;
    });
    assert.equal(metric(text, 'pyreach_agent_jobs_received_total'), 1);
    assert.equal(metric(text, 'pyreach_agent_job_pickup_latency_seconds_count'), 1);
    assert.ok((metric(text, 'pyreach_agent_job_pickup_latency_seconds_sum') ?? 0) > 0);
    assert.equal(metric(text, 'pyreach_agent_connected'), 1);
    assert.ok((metric(text, 'pyreach_agent_inventory_processes') ?? 0) >= 1);
    assert.equal(metric(text, 'pyreach_agent_kubernetes_pods'), 1);
    assert.equal(metric(text, 'pyreach_agent_kubernetes_watch_synced'), 1);
    assert.equal(metric(text, 'pyreach_agent_outbox_depth'), 0);
    assert.ok((metric(text, 'pyreach_agent_process_resident_memory_bytes') ?? 0) > 0);
  });

  it('is no longer ready when the control plane goes away, and still live', async () => {
    await cp.stop();
    const body = await eventually('not ready', async () => {
      const r = await fetch(`${base}/readyz`);
      return r.status === 503 ? ((await r.json()) as { reasons: string[] }) : null;
    });
    assert.match(
      body.reasons[0] ?? '',
      /^not connected to the control plane \((disconnected|connecting|authenticating)\)$/,
    );
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.equal(metric(text, 'pyreach_agent_connected'), 0);
  });
});
