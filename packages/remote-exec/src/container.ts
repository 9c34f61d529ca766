/**
 * Container identity from /proc/PID/cgroup: which runtime started the process (docker, containerd through
 * the CRI, CRI-O, podman), the container id, and the Kubernetes pod uid, for cgroup v1, v2 and hybrid
 * layouts with both the cgroupfs and the systemd cgroup drivers.
 *
 * Where each layout is documented (test/fixtures/cgroup/ holds one file per layout, with its source):
 *  - the file's format, `hierarchy-ID:controller-list:cgroup-path`, and the single `0::<path>` line of
 *    cgroup v2: man 7 cgroups, "/proc/[pid]/cgroup"; kernel Documentation/admin-guide/cgroup-v2.rst,
 *    "Processes"; paths outside the reader's cgroup namespace start with `/..` components:
 *    cgroup-v2.rst, "Namespace" (e.g. `0::/../batchjobs/container_id2/sub_cgrp_1`).
 *  - systemd scope and slice names (`<prefix>-<id>.scope`, nested slices repeating their parent's prefix,
 *    `-` in a name part escaped): systemd.slice(5), systemd.scope(5); runc's systemd driver names the scope
 *    `<prefix>-<id>.scope` from a `slice:prefix:name` cgroupsPath (runc docs/systemd.md), with prefix
 *    `docker` (Docker, `/system.slice/docker-<id>.scope`), `cri-containerd` (containerd's CRI plugin),
 *    `crio` (CRI-O, also `crio-conmon-<id>.scope` for its monitor) and `libpod` (podman,
 *    `/machine.slice/libpod-<id>.scope`, on cgroup v2 with a `container` leaf below it).
 *  - Docker's cgroupfs driver: `/docker/<id>` (Docker docs, "Runtime metrics", "Control groups").
 *  - Kubernetes: pods under `kubepods` by QoS class, `kubepods/besteffort/pod<uid>/<id>` (cgroupfs) or
 *    `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _ for ->.slice/...`
 *    (systemd; kubelet's cgroup_manager_linux.go escapes `-` as `_`); Guaranteed pods sit directly under
 *    kubepods. Kubernetes docs: "Configuring a cgroup driver", "About cgroup v2", "Pod Quality of Service
 *    Classes". Static pods carry the 32-hex-digit hash of their manifest as uid (the mirror pod's
 *    `kubernetes.io/config.mirror` annotation).
 *
 * Everything in a cgroup path is untrusted text: whoever owns a cgroup subtree names its children (a rootless
 * user owns everything under `user@UID.service`; a container with a writable cgroupfs owns its own subtree).
 * So: ids are accepted only as 64 lowercase hex digits (pod uids as a UUID or a 32-hex static-pod hash); the
 * *outermost* match wins (a process can only add components below its own cgroup, so it cannot override
 * what its runtime or kubelet named above it); the pod component must sit directly above the container one;
 * below a `user@UID.service` delegation the identity is reported as rootless with that uid and never as a
 * Kubernetes pod; a file whose lines repeat a hierarchy id (which the kernel never writes — it refuses a
 * newline in a cgroup name, see cgroup_mkdir()) or whose hierarchies name different containers is refused.
 * Pure parsing here; `readContainerIdentity` does the size-capped read.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { ContainerIdentity } from '@pyreach/protocol/inventory';
import { procPath } from './procfs';

export type ContainerRuntime = 'docker' | 'containerd' | 'cri-o' | 'podman';
export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';
export type CgroupLayout = 'v1' | 'v2' | 'hybrid';

/** What the cgroup path says about a process's container. */
export interface CgroupIdentity {
  cgroup: CgroupLayout;
  /** null when the layout names no runtime (Kubernetes with the cgroupfs driver: `pod<uid>/<id>`). */
  runtime: ContainerRuntime | null;
  /** 64 lowercase hex digits. */
  containerId: string | null;
  /** Lowercase UUID, or the 32-hex-digit hash of a static pod. */
  podUid: string | null;
  qosClass: QosClass | null;
  /** Set when the container's cgroup lies in this user's delegated subtree (rootless podman/docker). */
  rootlessUid: number | null;
}

export class CgroupParseError extends Error {
  override name = 'CgroupParseError';
}

/** Far above any real file (one line per hierarchy, each path < PATH_MAX). */
export const MAX_CGROUP_FILE_BYTES = 64 * 1024;

const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const STATIC_POD_UID = /^[0-9a-f]{32}$/;

/** `<prefix>-<id>.scope` as runc's systemd driver names it. */
const SCOPE = /^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$/;
/** CRI-O's and podman's cgroupfs names: `crio-<id>`, `libpod-<id>`. */
const CGROUPFS_PREFIXED = /^(crio|libpod)-([0-9a-f]{64})$/;
const RUNTIME_OF_PREFIX: Record<string, ContainerRuntime> = {
  docker: 'docker',
  'cri-containerd': 'containerd',
  crio: 'cri-o',
  libpod: 'podman',
};
/** systemd pod slice: `[<cgroup-root prefix>-]kubepods[-<qos>]-pod<uid, - escaped as _>.slice`. */
const POD_SLICE = /^(?:[a-z0-9_.]+-)?kubepods-(?:(burstable|besteffort)-)?pod([0-9a-f_]{32,36})\.slice$/;
/** cgroupfs pod directory: `pod<uid>` below kubepods[/qos]. */
const POD_DIR = /^pod([0-9a-f-]{32,36})$/;
const USER_MANAGER = /^user@(\d{1,10})\.service$/;

interface Line {
  id: number;
  controllers: string;
  path: string;
}

function parseLines(text: string): Line[] {
  const lines: Line[] = [];
  const ids = new Set<number>();
  const controllers = new Set<string>();
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const a = raw.indexOf(':');
    const b = a < 0 ? -1 : raw.indexOf(':', a + 1);
    if (a <= 0 || b < 0) throw new CgroupParseError('a line is not hierarchy-id:controllers:path');
    const idText = raw.slice(0, a);
    if (!/^\d{1,6}$/.test(idText)) throw new CgroupParseError('a hierarchy id is not a number');
    const id = Number(idText);
    const ctl = raw.slice(a + 1, b);
    let path = raw.slice(b + 1);
    // A removed cgroup that still holds the (exiting) process.
    if (path.endsWith(' (deleted)')) path = path.slice(0, -' (deleted)'.length);
    if (!path.startsWith('/')) throw new CgroupParseError('a cgroup path is not absolute');
    if (ids.has(id))
      throw new CgroupParseError(`hierarchy ${id} appears twice (the kernel writes each hierarchy once)`);
    ids.add(id);
    for (const c of ctl.split(',').filter(Boolean)) {
      if (controllers.has(c)) throw new CgroupParseError(`controller ${c} appears twice`);
      controllers.add(c);
    }
    if (id === 0 && ctl !== '') throw new CgroupParseError('hierarchy 0 lists controllers');
    lines.push({ id, controllers: ctl, path });
  }
  if (lines.length === 0) throw new CgroupParseError('no cgroup lines');
  return lines;
}

const podUidOf = (raw: string): string | null => {
  const uid = raw.replace(/_/g, '-');
  return UUID.test(uid) || STATIC_POD_UID.test(uid) ? uid : null;
};

type Match = Omit<CgroupIdentity, 'cgroup'>;

/** The container named by one cgroup path, outermost match first; null when it names none. */
export function matchCgroupPath(path: string): Match | null {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  let rootlessUid: number | null = null;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const user = USER_MANAGER.exec(part);
    if (user && rootlessUid === null) {
      rootlessUid = Number(user[1]);
      continue;
    }
    let runtime: ContainerRuntime | null = null;
    let containerId: string | null = null;
    const scope = SCOPE.exec(part) ?? CGROUPFS_PREFIXED.exec(part);
    if (scope) {
      runtime = RUNTIME_OF_PREFIX[scope[1]!]!;
      containerId = scope[2]!;
    } else if (HEX64.test(part) && i > 0) {
      const parent = parts[i - 1]!;
      if (parent === 'docker') {
        runtime = 'docker';
        containerId = part;
      } else if (POD_DIR.test(parent) || POD_SLICE.test(parent)) {
        // Kubernetes with the cgroupfs driver: the layout names no runtime (containerd or cri-dockerd).
        containerId = part;
      }
    }
    if (!containerId) continue;
    // The pod is the component directly above the container; only believed outside a user's delegation.
    let podUid: string | null = null;
    let qosClass: QosClass | null = null;
    const parent = i > 0 ? parts[i - 1]! : '';
    const slice = POD_SLICE.exec(parent);
    const dir = POD_DIR.exec(parent);
    if (rootlessUid === null && slice) {
      podUid = podUidOf(slice[2]!);
      qosClass = podUid ? ((slice[1] as QosClass | undefined) ?? 'guaranteed') : null;
    } else if (rootlessUid === null && dir) {
      const above = i > 1 ? parts[i - 2]! : '';
      if (above === 'kubepods' || above === 'burstable' || above === 'besteffort' || above === '..') {
        podUid = podUidOf(dir[1]!);
        if (podUid)
          qosClass =
            above === 'burstable' || above === 'besteffort' ? above : above === '..' ? null : 'guaranteed';
      }
    }
    return { runtime, containerId, podUid, qosClass, rootlessUid };
  }
  return null;
}

export interface ParsedCgroup {
  layout: CgroupLayout;
  /** The path the identity was read from (untrusted text; for diagnostics only). */
  path: string;
  identity: CgroupIdentity | null;
}

/**
 * Parse the text of /proc/PID/cgroup. Throws CgroupParseError for text the kernel would not have written
 * or whose hierarchies disagree about the container.
 */
export function parseProcCgroup(text: string): ParsedCgroup {
  const lines = parseLines(text);
  const unified = lines.find((l) => l.id === 0);
  const layout: CgroupLayout = unified ? (lines.length === 1 ? 'v2' : 'hybrid') : 'v1';
  // Preference: the unified hierarchy, then systemd's named one, then the controllers in file order.
  const ordered = [
    ...(unified ? [unified] : []),
    ...lines.filter((l) => l.controllers === 'name=systemd'),
    ...lines.filter((l) => l.id !== 0 && l.controllers !== 'name=systemd'),
  ];
  let chosen: { line: Line; match: Match } | null = null;
  for (const line of ordered) {
    const match = matchCgroupPath(line.path);
    if (!match) continue;
    if (!chosen) chosen = { line, match };
    else if (match.containerId !== chosen.match.containerId)
      throw new CgroupParseError(
        `hierarchies name different containers (${chosen.match.containerId!.slice(0, 12)} and ${match.containerId!.slice(0, 12)})`,
      );
  }
  if (!chosen) return { layout, path: (unified ?? ordered[0]!).path, identity: null };
  return { layout, path: chosen.line.path, identity: { cgroup: layout, ...chosen.match } };
}

export type ContainerIdentityRead =
  { ok: true; layout: CgroupLayout; identity: CgroupIdentity | null } | { ok: false; reason: string };

/** Read /proc/PID/cgroup (at most MAX_CGROUP_FILE_BYTES) and parse it. Never throws. */
export function readContainerIdentity(procRoot: string, pid: number): ContainerIdentityRead {
  let fd: number;
  try {
    fd = openSync(procPath(procRoot, pid, 'cgroup'), 'r');
  } catch (e) {
    return { ok: false, reason: `cannot read /proc/${pid}/cgroup (${(e as NodeJS.ErrnoException).code})` };
  }
  const buf = Buffer.alloc(MAX_CGROUP_FILE_BYTES + 1);
  let len = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
      if (len > MAX_CGROUP_FILE_BYTES)
        return { ok: false, reason: `/proc/${pid}/cgroup is larger than ${MAX_CGROUP_FILE_BYTES} bytes` };
    }
  } catch (e) {
    return { ok: false, reason: `cannot read /proc/${pid}/cgroup (${(e as NodeJS.ErrnoException).code})` };
  } finally {
    closeSync(fd);
  }
  try {
    // latin1 keeps every byte as one character: names need not be UTF-8, and only ASCII is ever matched.
    const parsed = parseProcCgroup(buf.subarray(0, len).toString('latin1'));
    return { ok: true, layout: parsed.layout, identity: parsed.identity };
  } catch (e) {
    if (e instanceof CgroupParseError)
      return { ok: false, reason: `/proc/${pid}/cgroup not understood: ${e.message}` };
    throw e;
  }
}

/**
 * The inventory's `containerIdentity` for one process: what its cgroup says, or — for a process in its own
 * namespaces whose cgroup names no known runtime — an identity that says what could not be learnt.
 * Undefined for host processes whose cgroup names no container.
 */
export function containerIdentityFor(
  procRoot: string,
  pid: number,
  inContainer: boolean,
): ContainerIdentity | undefined {
  const read = readContainerIdentity(procRoot, pid);
  if (read.ok && read.identity) {
    const { cgroup, runtime, containerId, podUid, qosClass, rootlessUid } = read.identity;
    const out: ContainerIdentity = { cgroup, runtime, containerId, podUid, qosClass, rootlessUid };
    if (runtime === null)
      out.unknown = ['runtime: the cgroupfs layout (pod<uid>/<id>) does not name the runtime'];
    return out;
  }
  if (!inContainer) return undefined;
  return {
    cgroup: read.ok ? read.layout : null,
    runtime: null,
    containerId: null,
    podUid: null,
    unknown: [
      read.ok
        ? 'container: own namespaces, but the cgroup path names no container runtime this agent knows'
        : read.reason.slice(0, 512),
    ],
  };
}
