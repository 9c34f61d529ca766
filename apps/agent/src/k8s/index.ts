/**
 * Kubernetes awareness of the agent: decide whether the pod watch can run here (in a pod, with a
 * ServiceAccount token and the node's name) and start it; otherwise say why not, so every pod process's
 * inventory entry can tell the operator what the agent could not learn.
 */
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config';
import { KubeApi } from './client';
import type { KubeContext } from './enrich';
import { PodWatcher } from './pods';

export { podAwareEngine, withPodFacts, type KubeContext } from './enrich';
export { PodWatcher } from './pods';
export { KubeApi, KubeApiError, IN_CLUSTER_CA_FILE, IN_CLUSTER_TOKEN_FILE } from './client';

/** The in-cluster environment kubelet gives every pod (read by env.ts). */
export interface KubeEnv {
  serviceHost?: string;
  servicePort?: string;
}

export interface Kubernetes extends KubeContext {
  stop(): Promise<void>;
}

/** The API server's URL from the in-cluster environment, or null when not in a pod. */
export function inClusterServer(env: KubeEnv): string | null {
  if (!env.serviceHost || !env.servicePort) return null;
  const host = env.serviceHost.includes(':') ? `[${env.serviceHost}]` : env.serviceHost;
  return `https://${host}:${env.servicePort}`;
}

export function startKubernetes(config: AgentConfig, env: KubeEnv, log: Logger): Kubernetes {
  const k = config.kubernetes;
  const none = (why: string): Kubernetes => {
    log.info({ reason: why }, 'pod facts (name, namespace, labels, workload) unavailable');
    return { watcher: null, unavailable: why, stop: async () => undefined };
  };
  if (k.mode === 'off') return none('the pod watch is turned off (kubernetes.mode = off)');
  const server = k.apiServer ?? inClusterServer(env);
  if (!server) return none('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set)');
  if (!existsSync(k.tokenFile))
    return none(
      `no ServiceAccount token at ${k.tokenFile} (give the agent's pod a ServiceAccount with get/list/watch on pods and automountServiceAccountToken: true)`,
    );
  if (!k.nodeName)
    return none(
      'the node name is unknown: set PYREACH_AGENT_NODE_NAME from the downward API (spec.nodeName)',
    );
  const api = new KubeApi({ server, tokenFile: k.tokenFile, caFile: k.caFile ?? null });
  const watcher = new PodWatcher({
    api,
    nodeName: k.nodeName,
    log: log.child({ component: 'pod-watch' }),
    backoff: config.reconnect,
  });
  watcher.start();
  log.info({ server: api.server, node: k.nodeName }, 'watching the pods of this node');
  return { watcher, unavailable: null, stop: () => watcher.stop() };
}
