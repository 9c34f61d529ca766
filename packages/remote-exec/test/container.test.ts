/**
 * Container identity from /proc/PID/cgroup, on files that reproduce what each runtime and cgroup version
 * really writes (test/fixtures/cgroup/; ids are made up, layouts are not). Where each layout is documented
 * is noted per case; the general references are at the top of src/container.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ContainerIdentity } from '@pyreach/protocol/inventory';
import {
  CgroupParseError,
  containerIdentityFor,
  MAX_CGROUP_FILE_BYTES,
  parseProcCgroup,
  readContainerIdentity,
  type CgroupIdentity,
} from '../src/container';

const FIXTURES = fileURLToPath(new URL('./fixtures/cgroup/', import.meta.url));
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'latin1');

type Expect = Omit<CgroupIdentity, 'rootlessUid'> & { rootlessUid?: number | null };

/** file → expected identity, and where that layout is documented. */
const CASES: { file: string; source: string; expect: Expect }[] = [
  {
    file: 'docker-v1-cgroupfs.txt',
    source:
      'Docker docs "Runtime metrics": /sys/fs/cgroup/<controller>/docker/<longid>/ (cgroupfs driver, v1)',
    expect: {
      cgroup: 'v1',
      runtime: 'docker',
      containerId: '9e4b1fd1a27c4cc0f2a6a4f1c0f2e8b7d6c5a4b3e2f1d0c9b8a7f6e5d4c3b2a1',
      podUid: null,
      qosClass: null,
    },
  },
  {
    file: 'docker-hybrid-cgroupfs.txt',
    source:
      'hybrid hierarchy (systemd "unified" mount beside v1 controllers, man 7 cgroups): the 0:: line is the shim service, the v1 lines name the container',
    expect: {
      cgroup: 'hybrid',
      runtime: 'docker',
      containerId: '3f2a9c7e1b5d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a',
      podUid: null,
      qosClass: null,
    },
  },
  {
    file: 'docker-v1-systemd.txt',
    source: 'runc docs/systemd.md: scope <prefix>-<id>.scope, Docker prefix "docker" in system.slice',
    expect: {
      cgroup: 'v1',
      runtime: 'docker',
      containerId: 'c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2',
      podUid: null,
      qosClass: null,
    },
  },
  {
    file: 'docker-v2-systemd.txt',
    source:
      'Docker docs "Runtime metrics", cgroup v2 with the systemd driver: /sys/fs/cgroup/system.slice/docker-<id>.scope',
    expect: {
      cgroup: 'v2',
      runtime: 'docker',
      containerId: '0b7e2c9a4f1d6e3b8a5c2f9e6d3a0b7c4e1f8a5d2b9c6e3f0a7d4b1e8c5f2a9d',
      podUid: null,
      qosClass: null,
    },
  },
  {
    file: 'docker-v2-cgroupfs.txt',
    source: 'Docker docs "Runtime metrics", cgroup v2 with the cgroupfs driver: /sys/fs/cgroup/docker/<id>',
    expect: {
      cgroup: 'v2',
      runtime: 'docker',
      containerId: '5a1b9c3d7e2f6a0b4c8d2e6f0a4b8c2d6e0f4a8b2c6d0e4f8a2b6c0d4e8f2a6b',
      podUid: null,
      qosClass: null,
    },
  },
  {
    file: 'k8s-containerd-v1-cgroupfs-besteffort.txt',
    source: 'Kubernetes "Configuring a cgroup driver" (cgroupfs): kubepods/<qos>/pod<uid>/<container id>',
    expect: {
      cgroup: 'hybrid',
      runtime: null,
      containerId: '7d3e1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d',
      podUid: '8f14e45f-ceea-467f-a0e6-1a2b3c4d5e6f',
      qosClass: 'besteffort',
    },
  },
  {
    file: 'k8s-containerd-v1-systemd-burstable.txt',
    source:
      'kubelet cgroup_manager_linux.go (systemd driver: kubepods-<qos>-pod<uid with _>.slice) + containerd CRI scope prefix cri-containerd',
    expect: {
      cgroup: 'hybrid',
      runtime: 'containerd',
      containerId: 'e4c1b8a5f2d9c6b3a0e7d4c1b8f5a2e9d6c3b0a7f4e1d8c5b2a9f6e3d0c7b4a1',
      podUid: '2c9d7a41-3b6e-4f08-9d15-7e4a2b8c6f30',
      qosClass: 'burstable',
    },
  },
  {
    file: 'k8s-containerd-v2-systemd-burstable.txt',
    source: 'Kubernetes "About cgroup v2": one unified hierarchy, systemd driver',
    expect: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: '1f2e3d4c5b6a79880f1e2d3c4b5a69788f9e0d1c2b3a49586f7e8d9c0b1a2f3e',
      podUid: 'b7a4c2e0-91d3-4e5f-8a6b-0c1d2e3f4a5b',
      qosClass: 'burstable',
    },
  },
  {
    file: 'k8s-containerd-v2-systemd-guaranteed.txt',
    source: 'Kubernetes "Pod Quality of Service Classes": Guaranteed pods sit directly under kubepods',
    expect: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: 'aa11bb22cc33dd44ee55ff6600778899aabbccddeeff00112233445566778899',
      podUid: 'd2e3f4a5-b6c7-4d8e-9f0a-1b2c3d4e5f60',
      qosClass: 'guaranteed',
    },
  },
  {
    file: 'k8s-crio-v2-systemd-besteffort.txt',
    source: 'CRI-O (systemd cgroup manager): scope prefix crio, crio-<id>.scope',
    expect: {
      cgroup: 'v2',
      runtime: 'cri-o',
      containerId: '6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a',
      podUid: '0e9f8a7b-6c5d-4e3f-a2b1-c0d9e8f7a6b5',
      qosClass: 'besteffort',
    },
  },
  {
    file: 'k8s-crio-v1-systemd-burstable.txt',
    source: 'CRI-O on cgroup v1 (OpenShift 4 before v2): same scope names in every controller',
    expect: {
      cgroup: 'hybrid',
      runtime: 'cri-o',
      containerId: 'f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f',
      podUid: '4a5b6c7d-8e9f-4a0b-b1c2-d3e4f5a6b7c8',
      qosClass: 'burstable',
    },
  },
  {
    file: 'k8s-crio-v1-cgroupfs-burstable.txt',
    source: 'CRI-O with cgroup_manager = "cgroupfs": kubepods/<qos>/pod<uid>/crio-<id>',
    expect: {
      cgroup: 'v1',
      runtime: 'cri-o',
      containerId: '3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d',
      podUid: '9c8b7a6f-5e4d-4c3b-a2f1-e0d9c8b7a6f5',
      qosClass: 'burstable',
    },
  },
  {
    file: 'k8s-containerd-v2-seen-from-cgroupns.txt',
    source:
      'kernel cgroup-v2.rst "Namespace": read from inside a cgroup namespace (the agent pod), other cgroups appear as /../<path>',
    expect: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: '9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c',
      podUid: '6d7e8f90-a1b2-4c3d-9e4f-5a6b7c8d9e0f',
      qosClass: 'besteffort',
    },
  },
  {
    file: 'k8s-docker-v1-systemd-burstable.txt',
    source:
      'Kubernetes with dockershim/cri-dockerd and the systemd driver: docker-<id>.scope in the pod slice',
    expect: {
      cgroup: 'v1',
      runtime: 'docker',
      containerId: '2468ace02468ace02468ace02468ace02468ace02468ace02468ace02468ace0',
      podUid: '11223344-5566-4778-8899-aabbccddeeff',
      qosClass: 'burstable',
    },
  },
  {
    file: 'k8s-static-pod-v2-systemd.txt',
    source:
      'Kubernetes "Create static Pods": a static pod\'s uid is its manifest hash (the mirror pod\'s kubernetes.io/config.mirror)',
    expect: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: '13579bdf13579bdf13579bdf13579bdf13579bdf13579bdf13579bdf13579bdf',
      podUid: '5c0a3e9f1b7d4e2a8c6f0b3d9e1a7c4f',
      qosClass: 'burstable',
    },
  },
  {
    file: 'k8s-kind-node-v2-systemd.txt',
    source:
      'kubelet --cgroup-root=/kubelet (kind nodes): systemd slices repeat the parent prefix (systemd.slice(5))',
    expect: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: 'fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210',
      podUid: 'a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d',
      qosClass: 'besteffort',
    },
  },
  {
    file: 'podman-v2-systemd-rootful.txt',
    source:
      'podman (crun, systemd cgroup manager, v2): machine.slice/libpod-<id>.scope with a "container" leaf',
    expect: {
      cgroup: 'v2',
      runtime: 'podman',
      containerId: '4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e',
      podUid: null,
      qosClass: null,
    },
  },
  {
    file: 'podman-v2-rootless.txt',
    source: "rootless podman: the scope lives in the user manager's delegated subtree user@<uid>.service",
    expect: {
      cgroup: 'v2',
      runtime: 'podman',
      containerId: 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00',
      podUid: null,
      qosClass: null,
      rootlessUid: 1000,
    },
  },
  {
    file: 'podman-v1-cgroupfs.txt',
    source: 'podman with cgroup_manager = "cgroupfs": /libpod_parent/libpod-<id>',
    expect: {
      cgroup: 'v1',
      runtime: 'podman',
      containerId: '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9',
      podUid: null,
      qosClass: null,
    },
  },
];

/** Files that name no container (host processes, a runtime's monitor). */
const NO_CONTAINER = [
  'host-v2-service.txt',
  'host-v2-user-session.txt',
  // This machine's own sandbox: a 32-hex-digit name is not a container id.
  'host-hybrid-sandbox.txt',
  // CRI-O's monitor (conmon) has its own scope; it is not the container.
  'k8s-crio-conmon-v2.txt',
];

describe('container identity from /proc/PID/cgroup (real layouts)', () => {
  for (const c of CASES) {
    it(`reads ${c.expect.runtime ?? 'an unnamed runtime'} from ${c.file} (${c.source})`, () => {
      const parsed = parseProcCgroup(fixture(c.file));
      assert.deepEqual(parsed.identity, { rootlessUid: null, ...c.expect });
    });
  }

  for (const file of NO_CONTAINER) {
    it(`finds no container in ${file}`, () => {
      assert.equal(parseProcCgroup(fixture(file)).identity, null);
    });
  }

  it('reports the layout of a host process too (v2, hybrid)', () => {
    assert.equal(parseProcCgroup(fixture('host-v2-service.txt')).layout, 'v2');
    assert.equal(parseProcCgroup(fixture('host-hybrid-sandbox.txt')).layout, 'hybrid');
  });

  it('reads a removed cgroup that still holds an exiting process (" (deleted)")', () => {
    const id = parseProcCgroup(`0::/system.slice/docker-${'ab'.repeat(32)}.scope (deleted)\n`).identity;
    assert.equal(id?.containerId, 'ab'.repeat(32));
  });
});

describe('container identity when the cgroup path is hostile', () => {
  it('takes the outermost container: a process nesting a fake pod and container below its own is not believed', () => {
    const id = parseProcCgroup(fixture('hostile/nested-fake-container.txt')).identity;
    assert.equal(id?.containerId, '6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a');
    assert.equal(id?.podUid, '0e9f8a7b-6c5d-4e3f-a2b1-c0d9e8f7a6b5');
    assert.equal(id?.runtime, 'containerd');
  });

  it('never reads a pod from inside a user-delegated subtree, and says whose subtree it is', () => {
    const id = parseProcCgroup(fixture('hostile/rootless-claims-a-pod.txt')).identity;
    assert.equal(id?.podUid, null, 'a user can name cgroups under user@UID.service anything');
    assert.equal(id?.qosClass, null);
    assert.equal(id?.rootlessUid, 1000);
  });

  it('refuses a file with two unified lines instead of reading either', () => {
    assert.throws(
      () => parseProcCgroup(fixture('hostile/two-unified-lines.txt')),
      (e: Error) => e instanceof CgroupParseError && /hierarchy 0 appears twice/.test(e.message),
    );
  });

  it('refuses hierarchies that name different containers', () => {
    assert.throws(
      () => parseProcCgroup(fixture('hostile/hierarchies-disagree.txt')),
      (e: Error) => e instanceof CgroupParseError && /different containers/.test(e.message),
    );
  });

  it('accepts ids only as 64 lowercase hex digits', () => {
    for (const f of ['id-not-hex.txt', 'id-uppercase.txt', 'id-too-long.txt'])
      assert.equal(parseProcCgroup(fixture(`hostile/${f}`)).identity, null, f);
  });

  it('reads names that are not UTF-8 as bytes and finds nothing in them', () => {
    assert.equal(parseProcCgroup(fixture('hostile/junk-bytes.txt')).identity, null);
  });

  it('refuses text that is not a cgroup file', () => {
    assert.throws(() => parseProcCgroup(fixture('hostile/not-cgroup.txt')), CgroupParseError);
    assert.throws(() => parseProcCgroup(''), CgroupParseError);
    assert.throws(() => parseProcCgroup('0:memory:/x\n'), /hierarchy 0 lists controllers/);
  });
});

describe('reading /proc/PID/cgroup', () => {
  const fakeProc = (content: string | Buffer): string => {
    const root = mkdtempSync(join(tmpdir(), 'pyreach-cgroup-'));
    mkdirSync(join(root, '4242'));
    writeFileSync(join(root, '4242', 'cgroup'), content);
    return root;
  };

  it('stops reading past the size cap and says so', () => {
    const line = `0::/system.slice/docker-${'ab'.repeat(32)}.scope\n`;
    const root = fakeProc(line + 'x'.repeat(MAX_CGROUP_FILE_BYTES));
    const r = readContainerIdentity(root, 4242);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /larger than 65536 bytes/);
  });

  it('says why when the file cannot be read', () => {
    const r = readContainerIdentity(fakeProc(''), 999_999);
    assert.deepEqual(r, { ok: false, reason: 'cannot read /proc/999999/cgroup (ENOENT)' });
  });

  it('gives the inventory an identity that validates against the protocol schema', () => {
    const id = containerIdentityFor(
      fakeProc(fixture('k8s-containerd-v1-cgroupfs-besteffort.txt')),
      4242,
      true,
    );
    assert.ok(id);
    assert.equal(ContainerIdentity.safeParse(id).success, true);
    assert.deepEqual(id.unknown, ['runtime: the cgroupfs layout (pod<uid>/<id>) does not name the runtime']);
  });

  it('says what it could not learn for a namespaced process whose cgroup names no runtime', () => {
    const id = containerIdentityFor(fakeProc(fixture('host-v2-user-session.txt')), 4242, true);
    assert.deepEqual(id, {
      cgroup: 'v2',
      runtime: null,
      containerId: null,
      podUid: null,
      unknown: ['container: own namespaces, but the cgroup path names no container runtime this agent knows'],
    });
    assert.equal(ContainerIdentity.safeParse(id).success, true);
  });

  it('attaches nothing to a host process whose cgroup names no container', () => {
    assert.equal(containerIdentityFor(fakeProc(fixture('host-v2-service.txt')), 4242, false), undefined);
  });
});
