/**
 * Container identity on the real kernel: a real CPython 3.14 target (container style: own pid and mount
 * namespace, chroot) is moved into real cgroups laid out the way kubelet + containerd lay them out, and
 * discovery reports what the cgroup says. No container runtime or cluster runs on these machines, so the
 * cgroups are made by the test — with the names the runtimes use — on this machine's cgroup hierarchies.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { discover } from '../src/index';
import { Cgroups, cgroupMount } from '../../../test/support/cgroup';
import { startPython, type PyTarget } from '../../../test/support/python';

let target: PyTarget;
const cgroups = new Cgroups();
const v2 = cgroupMount('cgroup2');
const podUid = randomUUID();
const containerId = randomBytes(32).toString('hex');
const tag = randomBytes(4).toString('hex');
const podSlice = `kubepods-besteffort-pod${podUid.replace(/-/g, '_')}.slice`;
const scope = `cri-containerd-${containerId}.scope`;
const rel = `pyreach-test-${tag}/kubepods.slice/kubepods-besteffort.slice/${podSlice}/${scope}`;

before(async () => {
  target = await startPython('idle.py', { style: 'container' });
});
after(async () => {
  cgroups.cleanup();
  await target?.kill();
  cgroups.cleanup();
});

describe('container identity of a real process in real cgroups', () => {
  it('discovery reports runtime, container id, pod uid and QoS class from a kubelet-style cgroup (v2)', async () => {
    cgroups.move(v2, cgroups.make(v2, rel), target.pid);
    const cg = readFileSync(`/proc/${target.pid}/cgroup`, 'utf8');
    assert.match(cg, new RegExp(`0::/pyreach-test-${tag}/kubepods.slice/.*/${scope}`));
    const [p] = await discover({ pids: [target.pid] });
    assert.ok(p, 'the target is discovered');
    assert.equal(p.inContainer, true);
    assert.equal(p.containerIdentity?.runtime, 'containerd');
    assert.equal(p.containerIdentity?.containerId, containerId);
    assert.equal(p.containerIdentity?.podUid, podUid);
    assert.equal(p.containerIdentity?.qosClass, 'besteffort');
    assert.equal(p.container, containerId.slice(0, 12), 'the short label is the runtime id');
  });

  it('a target that nests a fake pod and container below its own cgroup still reports its real one', async () => {
    const fakePod = randomUUID();
    const fakeId = randomBytes(32).toString('hex');
    const nested = cgroups.make(
      v2,
      `${rel}/kubepods-besteffort-pod${fakePod.replace(/-/g, '_')}.slice/cri-containerd-${fakeId}.scope`,
    );
    cgroups.move(v2, nested, target.pid);
    const [p] = await discover({ pids: [target.pid] });
    assert.equal(p?.containerIdentity?.containerId, containerId);
    assert.equal(p?.containerIdentity?.podUid, podUid);
    assert.doesNotMatch(JSON.stringify(p), new RegExp(fakeId), 'the planted id appears nowhere');
    cgroups.move(v2, join(v2, rel), target.pid);
  });

  it('reads a v1 controller hierarchy when the unified one names no container (hybrid, cgroupfs driver)', async () => {
    const pids = cgroupMount('cgroup', 'pids');
    cgroups.move(v2, v2, target.pid); // unified: back at the root, as on a hybrid host with runc's v1 driver
    const v1id = randomBytes(32).toString('hex');
    const v1pod = randomUUID();
    cgroups.move(
      pids,
      cgroups.make(pids, `pyreach-test-${tag}/kubepods/burstable/pod${v1pod}/${v1id}`),
      target.pid,
    );
    const [p] = await discover({ pids: [target.pid] });
    assert.equal(p?.containerIdentity?.cgroup, 'hybrid');
    assert.equal(p?.containerIdentity?.containerId, v1id);
    assert.equal(p?.containerIdentity?.podUid, v1pod);
    assert.equal(p?.containerIdentity?.qosClass, 'burstable');
    assert.equal(p?.containerIdentity?.runtime, null, 'cgroupfs names no runtime');
  });
});
