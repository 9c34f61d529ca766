/**
 * The pods of this node, as the Kubernetes API knows them: list, then watch from the list's
 * resourceVersion (with bookmarks, so a quiet node's watch resumes from a recent version), re-list on
 * 410 Gone (HTTP or an ERROR event — the version fell out of the API server's window), and reconnect with
 * jittered backoff on any other failure. Scoped with `fieldSelector=spec.nodeName=<node>`: the API server
 * sends only this node's pods (the RBAC grant is get/list/watch on pods; it cannot be narrowed to a node).
 *
 * Kept per pod: name, namespace, uid, labels, owning workload and container id → container name. Nothing
 * else of the pod spec (env, volumes...) is kept.
 *
 * Owning workload: the pod's controller owner reference. A ReplicaSet owner is reported as its Deployment
 * when the ReplicaSet's name is `<deployment>-<pod-template-hash>` and the pod carries that
 * `pod-template-hash` label — how the Deployment controller names both (Kubernetes docs, "Deployments":
 * "the name of a ReplicaSet is always formatted as [DEPLOYMENT-NAME]-[HASH]"). Confirming through the
 * ReplicaSet's own owner reference would need `get replicasets`, which the agent is deliberately not
 * granted. Other owners (StatefulSet, DaemonSet, Job, Node for static pods, custom controllers) are
 * reported as they are; a Job is not resolved to a CronJob (its name suffix is a convention the API does
 * not guarantee).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ContainerRuntime, KubernetesPodFacts } from '@pyreach/protocol/inventory';
import { Backoff } from '../backoff';
import { KubeApiError, type KubeApi, type WatchEvent } from './client';

const Owner = z.object({ kind: z.string(), name: z.string(), controller: z.boolean().optional() });
const ContainerStatus = z.object({ name: z.string(), containerID: z.string().optional() });
/** The part of a Pod the agent reads; everything else is dropped at parse time. */
const PodObject = z.object({
  metadata: z.object({
    name: z.string(),
    namespace: z.string(),
    uid: z.string(),
    resourceVersion: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    ownerReferences: z.array(Owner).optional(),
  }),
  spec: z.object({ nodeName: z.string().optional() }).optional(),
  status: z
    .object({
      containerStatuses: z.array(ContainerStatus).optional(),
      initContainerStatuses: z.array(ContainerStatus).optional(),
      ephemeralContainerStatuses: z.array(ContainerStatus).optional(),
    })
    .optional(),
});
type PodObject = z.infer<typeof PodObject>;
const PodList = z.object({
  metadata: z.object({ resourceVersion: z.string(), continue: z.string().optional() }),
  items: z.array(z.unknown()),
});

export interface PodContainer {
  name: string;
  runtime: ContainerRuntime | null;
}

export interface PodRecord {
  facts: Omit<KubernetesPodFacts, 'containerName'>;
  /** The static pod's uid as the kubelet (and the pod's cgroup) knows it, for a mirror pod. */
  mirrorOf: string | null;
  /** container id (64 hex) → container. */
  containers: Map<string, PodContainer>;
}

export type WatchState = 'starting' | 'synced' | 'resyncing' | 'stopped';

const SCHEMES: Record<string, ContainerRuntime> = {
  containerd: 'containerd',
  'cri-o': 'cri-o',
  docker: 'docker',
};

/** `containerd://<64 hex>` → id and runtime. */
export function parseContainerId(
  raw: string | undefined,
): { id: string; runtime: ContainerRuntime | null } | null {
  if (!raw) return null;
  const m = /^([a-z0-9-]+):\/\/([0-9a-f]{64})$/.exec(raw);
  if (!m) return null;
  return { id: m[2]!, runtime: SCHEMES[m[1]!] ?? null };
}

export function workloadOf(pod: PodObject): KubernetesPodFacts['workload'] {
  const owners = pod.metadata.ownerReferences ?? [];
  const owner = owners.find((o) => o.controller) ?? owners[0];
  if (!owner) return null;
  const hash = pod.metadata.labels?.['pod-template-hash'];
  if (
    owner.kind === 'ReplicaSet' &&
    hash &&
    owner.name.endsWith(`-${hash}`) &&
    owner.name.length > hash.length + 1
  )
    return { kind: 'Deployment', name: owner.name.slice(0, -(hash.length + 1)) };
  return { kind: owner.kind, name: owner.name };
}

export function recordOf(pod: PodObject): PodRecord {
  const containers = new Map<string, PodContainer>();
  const st = pod.status ?? {};
  for (const c of [
    ...(st.initContainerStatuses ?? []),
    ...(st.containerStatuses ?? []),
    ...(st.ephemeralContainerStatuses ?? []),
  ]) {
    const id = parseContainerId(c.containerID);
    if (id) containers.set(id.id, { name: c.name, runtime: id.runtime });
  }
  const mirror = pod.metadata.annotations?.['kubernetes.io/config.mirror'] ?? null;
  return {
    facts: {
      name: pod.metadata.name,
      namespace: pod.metadata.namespace,
      uid: pod.metadata.uid,
      nodeName: pod.spec?.nodeName ?? null,
      labels: pod.metadata.labels ?? {},
      workload: workloadOf(pod),
    },
    mirrorOf: mirror && /^[0-9a-f]{32}$/.test(mirror) ? mirror : null,
    containers,
  };
}

export interface PodWatcherOptions {
  api: KubeApi;
  nodeName: string;
  log: Logger;
  /** Items per list page (the list is paginated with `continue`). */
  pageSize?: number;
  /** Asked of the server per watch; it then ends the stream and the watcher resumes from its version. */
  watchTimeoutSeconds?: number;
  backoff?: { minMs: number; maxMs: number; random?: () => number };
}

export class PodWatcher {
  private pods = new Map<string, PodRecord>();
  private byContainer = new Map<string, string>();
  private byMirror = new Map<string, string>();
  private rv: string | null = null;
  private abort: AbortController | null = null;
  private readonly backoff: Backoff;
  private loop: Promise<void> | null = null;
  state: WatchState = 'starting';
  lastError: string | null = null;
  /** Counters for metrics and tests. */
  readonly stats = { lists: 0, watches: 0, relistsAfterGone: 0, bookmarks: 0, events: 0, errors: 0 };
  private readonly listeners = new Set<() => void>();

  constructor(private readonly o: PodWatcherOptions) {
    this.backoff = new Backoff(o.backoff ?? { minMs: 500, maxMs: 30_000 });
  }

  get nodeName(): string {
    return this.o.nodeName;
  }

  get size(): number {
    return this.pods.size;
  }

  get resourceVersion(): string | null {
    return this.rv;
  }

  /** The pod a container id belongs to (and the container's name). */
  byContainerId(id: string): { pod: PodRecord; container: PodContainer } | null {
    const uid = this.byContainer.get(id);
    const pod = uid ? this.pods.get(uid) : undefined;
    const container = pod?.containers.get(id);
    return pod && container ? { pod, container } : null;
  }

  /** By the uid in the pod's cgroup: the API uid, or a static pod's hash (its mirror pod). */
  byPodUid(uid: string): PodRecord | null {
    return this.pods.get(uid) ?? this.pods.get(this.byMirror.get(uid) ?? '') ?? null;
  }

  /** Resolves true once the first list is done (at once if it is), false after `ms`. */
  whenSynced(ms: number): Promise<boolean> {
    if (this.stats.lists > 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => (off(), resolve(false)), ms);
      const off = this.onChange(() => {
        if (this.stats.lists === 0) return;
        clearTimeout(t);
        off();
        resolve(true);
      });
    });
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    if (this.loop) return;
    this.abort = new AbortController();
    this.loop = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    this.abort?.abort();
    await this.loop?.catch(() => undefined);
    this.loop = null;
  }

  private selector(): string {
    return encodeURIComponent(`spec.nodeName=${this.o.nodeName}`);
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  private put(pod: PodRecord): void {
    this.remove(pod.facts.uid);
    this.pods.set(pod.facts.uid, pod);
    for (const id of pod.containers.keys()) this.byContainer.set(id, pod.facts.uid);
    if (pod.mirrorOf) this.byMirror.set(pod.mirrorOf, pod.facts.uid);
  }

  private remove(uid: string): void {
    const old = this.pods.get(uid);
    if (!old) return;
    for (const id of old.containers.keys()) if (this.byContainer.get(id) === uid) this.byContainer.delete(id);
    if (old.mirrorOf && this.byMirror.get(old.mirrorOf) === uid) this.byMirror.delete(old.mirrorOf);
    this.pods.delete(uid);
  }

  /** Parse a pod the API sent; a pod that does not parse is logged and skipped, never fatal. */
  private parsePod(raw: unknown): PodRecord | null {
    const p = PodObject.safeParse(raw);
    if (!p.success) {
      this.o.log.warn(
        { issues: p.error.issues.slice(0, 3) },
        'pod object from the API not understood; skipped',
      );
      return null;
    }
    return recordOf(p.data);
  }

  private async list(signal: AbortSignal): Promise<void> {
    const next = new Map<string, PodRecord>();
    let cont: string | undefined;
    let rv = '';
    do {
      const q = `fieldSelector=${this.selector()}&limit=${this.o.pageSize ?? 500}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`;
      const page = PodList.safeParse(await this.o.api.get(`/api/v1/pods?${q}`, signal));
      if (!page.success) throw new Error('the pod list from the API is not a PodList');
      for (const item of page.data.items) {
        const rec = this.parsePod(item);
        if (rec) next.set(rec.facts.uid, rec);
      }
      cont = page.data.metadata.continue || undefined;
      rv = page.data.metadata.resourceVersion;
    } while (cont);
    this.pods.clear();
    this.byContainer.clear();
    this.byMirror.clear();
    for (const rec of next.values()) this.put(rec);
    this.rv = rv;
    this.stats.lists++;
    this.state = 'synced';
    this.lastError = null;
    this.o.log.info(
      { pods: this.pods.size, resourceVersion: rv, node: this.o.nodeName },
      'pods of this node listed',
    );
    this.changed();
  }

  private apply(ev: WatchEvent): void {
    this.stats.events++;
    const meta = (ev.object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata;
    if (ev.type === 'ERROR') {
      const s = ev.object as { code?: number; reason?: string; message?: string } | null;
      throw new KubeApiError(
        s?.code ?? 0,
        s?.reason ?? null,
        `watch ERROR event: ${s?.message ?? 'no message'}`,
      );
    }
    if (ev.type === 'BOOKMARK') {
      this.stats.bookmarks++;
    } else {
      const rec = this.parsePod(ev.object);
      if (rec) {
        if (ev.type === 'DELETED') this.remove(rec.facts.uid);
        else this.put(rec);
        this.changed();
      }
    }
    if (typeof meta?.resourceVersion === 'string' && meta.resourceVersion) this.rv = meta.resourceVersion;
  }

  private async run(signal: AbortSignal): Promise<void> {
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.list(signal);
          needList = false;
        }
        const q =
          `watch=1&allowWatchBookmarks=true&fieldSelector=${this.selector()}` +
          `&resourceVersion=${encodeURIComponent(this.rv ?? '')}&timeoutSeconds=${this.o.watchTimeoutSeconds ?? 300}`;
        this.stats.watches++;
        await this.o.api.watch(`/api/v1/pods?${q}`, (ev) => this.apply(ev), signal);
        this.backoff.reset(); // a watch that ran its course: resume at once from the last version
      } catch (e) {
        if (signal.aborted) break;
        this.stats.errors++;
        const msg = (e as Error).message;
        if (e instanceof KubeApiError && e.gone) {
          this.stats.relistsAfterGone++;
          this.o.log.info({ reason: msg }, 'pod watch version expired; listing again');
          this.state = 'resyncing';
          needList = true;
          continue;
        }
        this.lastError = msg.slice(0, 300);
        if (this.state === 'synced') this.state = 'resyncing';
        if (e instanceof KubeApiError && (e.status === 401 || e.status === 403))
          this.lastError = `${this.lastError} (the agent's ServiceAccount needs get/list/watch on pods: deploy/k8s/base/agent/rbac.yaml)`;
        const delay = this.backoff.next();
        this.o.log.warn(
          { reason: this.lastError, delayMs: delay },
          'pod watch failed; retrying after backoff',
        );
        // Without a version to resume from, start over with a list.
        if (this.rv === null) needList = true;
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay);
          signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
        });
      }
    }
  }
}
