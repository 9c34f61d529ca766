/**
 * Container identity on the real kernel: a real CPython 3.14 target (container style: own pid and mount
 * namespace, chroot) is moved into real cgroups laid out the way kubelet + containerd lay them out, and
 * discovery reports what the cgroup says. No container runtime or cluster runs on these machines, so the
 * cgroups are made by the test — with the names the runtimes use — on this machine's cgroup hierarchies.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { discover } from '../src/index';
import { startPython, type PyTarget } from '../../../test/support/python';

/** Mount point of the first hierarchy of `fstype` (cgroup2, or cgroup with `option` among its options). */
function mountOf(fstype: 'cgroup' | 'cgroup2', option?: string): string {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const [type, , superOpts] = post.split(' ');
    if (type !== fstype) continue;
    if (option && !(superOpts ?? '').split(',').includes(option)) continue;
    return pre.split(' ')[4]!;
  }
  throw new Error(
    `no ${fstype}${option ? ` (${option})` : ''} hierarchy is mounted: this test needs a writable cgroup filesystem (root)`,
  );
}

const made: string[] = [];
function makeCgroup(root: string, rel: string): string {
  let p = root;
  for (const part of rel.split('/')) {
    p = join(p, part);
    if (!existsSync(p)) {
      mkdirSync(p);
      made.push(p);
    }
  }
  return p;
}
const moveInto = (cg: string, pid: number): void => writeFileSync(join(cg, 'cgroup.procs'), `${pid}\n`);

let target: PyTarget;
const v2 = mountOf('cgroup2');
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
  // Back to the root cgroups, then remove ours (children first).
  if (target) {
    for (const root of [v2, ...(v1Pids ? [v1Pids] : [])]) {
      try {
        moveInto(root, target.pid);
      } catch {
        /* gone */
      }
    }
    await target.kill();
  }
  for (const p of made.reverse()) {
    try {
      rmdirSync(p);
    } catch {
      /* still busy or already gone */
    }
  }
});

let v1Pids: string | null = null;

describe('container identity of a real process in real cgroups', () => {
  it('discovery reports runtime, container id, pod uid and QoS class from a kubelet-style cgroup (v2)', async () => {
    moveInto(makeCgroup(v2, rel), target.pid);
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
    const nested = makeCgroup(
      v2,
      `${rel}/kubepods-besteffort-pod${fakePod.replace(/-/g, '_')}.slice/cri-containerd-${fakeId}.scope`,
    );
    moveInto(nested, target.pid);
    const [p] = await discover({ pids: [target.pid] });
    assert.equal(p?.containerIdentity?.containerId, containerId);
    assert.equal(p?.containerIdentity?.podUid, podUid);
    assert.doesNotMatch(JSON.stringify(p), new RegExp(fakeId), 'the planted id appears nowhere');
    moveInto(join(v2, rel), target.pid);
  });

  it('reads a v1 controller hierarchy when the unified one names no container (hybrid, cgroupfs driver)', async (t) => {
    const pids = mountOf('cgroup', 'pids');
    v1Pids = pids;
    moveInto(v2, target.pid); // unified: back at the root, as on a hybrid host with runc's v1 driver
    const v1id = randomBytes(32).toString('hex');
    const v1pod = randomUUID();
    moveInto(makeCgroup(pids, `pyreach-test-${tag}/kubepods/burstable/pod${v1pod}/${v1id}`), target.pid);
    t.after(() => moveInto(pids, target.pid));
    const [p] = await discover({ pids: [target.pid] });
    assert.equal(p?.containerIdentity?.cgroup, 'hybrid');
    assert.equal(p?.containerIdentity?.containerId, v1id);
    assert.equal(p?.containerIdentity?.podUid, v1pod);
    assert.equal(p?.containerIdentity?.qosClass, 'burstable');
    assert.equal(p?.containerIdentity?.runtime, null, 'cgroupfs names no runtime');
  });
});
