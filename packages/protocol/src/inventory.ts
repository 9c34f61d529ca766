import { z } from 'zod';
import { Labels } from './common';
import { AgentLocalPolicy } from './preflight';

// ---- container identity (additive: older agents send only `inContainer` + `container`) -----------------

/** The runtime that started a container, as its cgroup path names it. */
export const ContainerRuntime = z.enum(['docker', 'containerd', 'cri-o', 'podman']);
export type ContainerRuntime = z.infer<typeof ContainerRuntime>;

const K8S_LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Kubernetes label key: `[prefix/]name` (prefix a DNS subdomain of at most 253 characters). */
export const KubernetesLabelKey = z
  .string()
  .max(317)
  .refine((k) => {
    const slash = k.lastIndexOf('/');
    const prefix = slash < 0 ? null : k.slice(0, slash);
    const name = slash < 0 ? k : k.slice(slash + 1);
    return (
      K8S_LABEL_NAME.test(name) && (prefix === null || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix)))
    );
  }, 'not a Kubernetes label key');
export const KubernetesLabelValue = z
  .string()
  .max(63)
  .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, 'not a Kubernetes label value');
/** Pod labels as the agent reports them: at most this many (the rest is said to be left out). */
export const MAX_POD_LABELS = 64;

/** The controller a pod belongs to, e.g. Deployment checkout (see apps/agent/src/k8s/pods.ts for how). */
export const KubernetesWorkload = z.object({
  kind: z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,62}$/),
  name: z.string().min(1).max(253).regex(DNS_SUBDOMAIN),
});
export type KubernetesWorkload = z.infer<typeof KubernetesWorkload>;

/** What the Kubernetes API says about the pod and container a process runs in (agent's pod watcher). */
export const KubernetesPodFacts = z.object({
  name: z.string().min(1).max(253).regex(DNS_SUBDOMAIN),
  namespace: z.string().min(1).max(63).regex(DNS_SUBDOMAIN),
  /** The API's metadata.uid (for a static pod's mirror, the mirror's own uid). */
  uid: z.string().max(64),
  nodeName: z.string().max(253).nullable(),
  /** The container's name in the pod spec, when its container id is in the pod's status. */
  containerName: z.string().max(63).nullable(),
  labels: z
    .record(KubernetesLabelKey, KubernetesLabelValue)
    .refine((l) => Object.keys(l).length <= MAX_POD_LABELS, `at most ${MAX_POD_LABELS} labels`),
  workload: KubernetesWorkload.nullable(),
});
export type KubernetesPodFacts = z.infer<typeof KubernetesPodFacts>;

/**
 * Who a process's container is. `runtime`, `containerId`, `podUid`, `qosClass` come from /proc/PID/cgroup
 * (packages/remote-exec/src/container.ts); `pod` from the Kubernetes API when the agent can watch pods.
 * These facts select targets; they never decide policy (a pod's labels are whatever its creator wrote).
 */
export const ContainerIdentity = z.object({
  cgroup: z.enum(['v1', 'v2', 'hybrid']).nullable(),
  runtime: ContainerRuntime.nullable(),
  containerId: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .nullable(),
  podUid: z
    .string()
    .regex(/^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/)
    .nullable(),
  qosClass: z.enum(['guaranteed', 'burstable', 'besteffort']).nullable().optional(),
  /** The container's cgroup is in this user's delegated subtree (rootless podman or docker). */
  rootlessUid: z.number().int().nonnegative().nullable().optional(),
  pod: KubernetesPodFacts.optional(),
  /** What could not be learnt, and why (e.g. no Kubernetes API access), in words for the operator. */
  unknown: z.array(z.string().max(512)).max(8).optional(),
});
export type ContainerIdentity = z.infer<typeof ContainerIdentity>;

/**
 * A thread as a fact of the inventory: its native id (in the target's own pid namespace, what `run --tid` takes),
 * its name and whether it is the interpreter's main thread. Its *state* (running, blocked in which syscall) changes
 * constantly and is read on demand (`readThreadStates`, stacks), never sent with every scan.
 */
export const ProcessThread = z.object({
  tid: z.number().int().positive(),
  main: z.boolean(),
  /**
   * The kernel's `comm` of the thread, as safe text: CPython 3.14's `threading` sets it to the Python thread name
   * (cut to 15 bytes); the main thread's is the program name. null when unreadable; absent from older agents.
   */
  name: z.string().max(64).nullable().optional(),
});

/** One Python process as discovered by the engine on a host. */
export const PythonProcess = z.object({
  pid: z.number().int().positive(),
  nsPid: z.number().int().positive(),
  /** Process start time in clock ticks since boot (field 22 of /proc/PID/stat), as a decimal string. */
  startTime: z.string().regex(/^\d+$/),
  uid: z.number().int().nonnegative(),
  user: z.string().max(256).nullable(),
  exe: z.string().max(4096),
  cmdline: z.array(z.string().max(4096)).max(256),
  cwd: z.string().max(4096).nullable().optional(),
  pythonVersion: z.string().max(32).nullable(),
  freeThreaded: z.boolean().nullable(),
  remoteDebugEnabled: z.boolean().nullable(),
  inContainer: z.boolean(),
  /** Short label kept for older receivers: a runtime id prefix, else the pid namespace (`pid:4026532178`). */
  container: z.string().max(256).nullable().optional(),
  /** Structured identity of the process's container (runtime, ids, pod); absent for host processes. */
  containerIdentity: ContainerIdentity.optional(),
  threads: z.array(ProcessThread).max(4096),
  /** Why version/threads could not be read, when they could not. */
  inspectError: z.string().max(1024).nullable().optional(),
});
export type PythonProcess = z.infer<typeof PythonProcess>;

export const HostFacts = z.object({
  hostname: z.string().min(1).max(255),
  os: z.string().max(255),
  kernel: z.string().max(255),
  arch: z.string().max(64),
  agentVersion: z.string().max(64),
  labels: Labels,
  bootId: z.string().max(64).optional(),
  /**
   * The parts of the agent's local policy that decide a refusal (allowCustomCode, its library, allowWake, users,
   * root, code size), for the pre-flight verdicts. Absent from older agents (then: unknown).
   */
  localPolicy: AgentLocalPolicy.optional(),
});
export type HostFacts = z.infer<typeof HostFacts>;

export const MAX_PROCESSES_PER_HOST = 5000;

export const InventorySnapshot = z.object({
  host: HostFacts,
  processes: z.array(PythonProcess).max(MAX_PROCESSES_PER_HOST),
  scannedAt: z.string(),
});
export type InventorySnapshot = z.infer<typeof InventorySnapshot>;

export const InventoryDelta = z.object({
  upserted: z.array(PythonProcess).max(MAX_PROCESSES_PER_HOST),
  /** Processes gone since the last report, by pid + start time. */
  removed: z
    .array(z.object({ pid: z.number().int().positive(), startTime: z.string() }))
    .max(MAX_PROCESSES_PER_HOST),
  scannedAt: z.string(),
});
export type InventoryDelta = z.infer<typeof InventoryDelta>;
