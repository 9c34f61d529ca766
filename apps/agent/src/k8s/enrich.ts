/**
 * Pod facts for discovered processes: the engine reads runtime, container id and pod uid from each
 * process's cgroup; this adds what the Kubernetes API knows about that pod (name, namespace, labels,
 * workload, container name) — or says, in the process's `containerIdentity.unknown`, why it cannot.
 *
 * Matching is by the container id first (the API's containerStatuses[].containerID), then by the pod uid
 * (also a static pod's manifest hash, through its mirror pod). The API is the authority for which pod a
 * container id belongs to; a cgroup's pod uid that disagrees with it is reported, not trusted.
 */
import {
  KubernetesLabelKey,
  KubernetesLabelValue,
  KubernetesPodFacts,
  MAX_POD_LABELS,
  type ContainerIdentity,
  type PythonProcess,
} from '@pyreach/protocol/inventory';
import type { Engine } from '../engine';
import type { PodRecord, PodWatcher } from './pods';

/** What the agent can ask the API, or why it cannot. */
export interface KubeContext {
  watcher: PodWatcher | null;
  /** Why there is no watcher (no cluster, no token, no node name, turned off). */
  unavailable: string | null;
}

function cleanLabels(labels: Record<string, string>, unknown: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const all = Object.keys(labels);
  const keys = all
    .filter(
      (k) => KubernetesLabelKey.safeParse(k).success && KubernetesLabelValue.safeParse(labels[k]).success,
    )
    .sort();
  if (keys.length < all.length)
    unknown.push(`pod labels: ${all.length - keys.length} are not valid Kubernetes labels, left out`);
  for (const k of keys.slice(0, MAX_POD_LABELS)) out[k] = labels[k]!;
  if (keys.length > MAX_POD_LABELS)
    unknown.push(
      `pod labels: ${keys.length - MAX_POD_LABELS} of ${keys.length} left out (at most ${MAX_POD_LABELS})`,
    );
  return out;
}

/**
 * The pod's facts as the protocol carries them, or undefined (with the reason in `unknown`) when the API
 * sent something the schema refuses: one odd pod must never make the whole inventory unacceptable.
 */
function factsOf(
  pod: PodRecord,
  containerName: string | null,
  unknown: string[],
): KubernetesPodFacts | undefined {
  const facts = KubernetesPodFacts.safeParse({
    ...pod.facts,
    labels: cleanLabels(pod.facts.labels, unknown),
    containerName,
  });
  if (facts.success) return facts.data;
  const issue = facts.error.issues[0];
  unknown.push(
    `pod facts: the API's pod ${pod.facts.uid.slice(0, 64)} does not fit the inventory (${issue?.path.join('.')}: ${issue?.message})`,
  );
  return undefined;
}

/** The identity with what the API knows added (a new object; the input is not changed). */
export function withPodFacts(id: ContainerIdentity, kube: KubeContext): ContainerIdentity {
  if (!id.containerId && !id.podUid) return id;
  const unknown = [...(id.unknown ?? [])];
  const out: ContainerIdentity = { ...id };
  const w = kube.watcher;
  if (!w) {
    // Only a Kubernetes pod has facts to miss; a plain docker/podman container does not.
    if (id.podUid)
      unknown.push(
        `pod name, namespace, labels, workload: ${kube.unavailable ?? 'no Kubernetes API access'}`,
      );
  } else if (w.state !== 'synced' && w.size === 0) {
    if (id.podUid)
      unknown.push(
        `pod name, namespace, labels, workload: the pod watch has not listed this node's pods yet${w.lastError ? ` (${w.lastError})` : ''}`,
      );
  } else {
    const byId = id.containerId ? w.byContainerId(id.containerId) : null;
    if (byId) {
      const facts = factsOf(byId.pod, byId.container.name, unknown);
      if (facts) out.pod = facts;
      if (!out.runtime && byId.container.runtime) {
        out.runtime = byId.container.runtime;
        const i = unknown.findIndex((u) => u.startsWith('runtime:'));
        if (i >= 0) unknown.splice(i, 1);
      }
      if (id.podUid && id.podUid !== byId.pod.facts.uid && id.podUid !== byId.pod.mirrorOf)
        unknown.push(
          `pod uid: the cgroup says ${id.podUid} but the API lists container ${id.containerId!.slice(0, 12)} in pod ${byId.pod.facts.uid}`,
        );
    } else if (id.podUid) {
      const pod = w.byPodUid(id.podUid);
      if (pod) {
        const facts = factsOf(pod, null, unknown);
        if (facts) out.pod = facts;
        if (id.containerId)
          unknown.push(
            `container name: container ${id.containerId.slice(0, 12)} is not (yet) in the pod's status`,
          );
      } else {
        unknown.push(`pod ${id.podUid} is not among the pods the API lists on node ${w.nodeName}`);
      }
    }
    if (w.state !== 'synced' && w.lastError)
      unknown.push(`pod facts may be stale: the pod watch is reconnecting (${w.lastError})`);
  }
  if (unknown.length) out.unknown = unknown.slice(0, 8).map((u) => u.slice(0, 512));
  else delete out.unknown;
  return out;
}

/** How long a discovery waits for the pod watch's first list (the agent's first scan races it). */
export const FIRST_LIST_WAIT_MS = 5000;

/** The engine, with pod facts added to every discovered process that runs in a container. */
export function podAwareEngine(engine: Engine, kube: KubeContext): Engine {
  let waited = false; // once: a watch that cannot list (no RBAC grant) must not slow every later scan
  return {
    ...engine,
    discover: async (opts) => {
      const found = await engine.discover(opts);
      if (!waited && kube.watcher && found.some((p) => p.containerIdentity?.podUid)) {
        waited = true;
        await kube.watcher.whenSynced(FIRST_LIST_WAIT_MS);
      }
      return found.map((p): PythonProcess =>
        p.containerIdentity ? { ...p, containerIdentity: withPodFacts(p.containerIdentity, kube) } : p,
      );
    },
  };
}
