/**
 * The one place the agent reads process.env. Everything else receives the parsed values: configuration is
 * merged from file, environment and flags in config.ts, and the environment's part comes only from here.
 */

/** Environment variables the agent understands, with the configuration setting each one feeds. */
export const ENV_SETTINGS = {
  PYREACH_AGENT_CONFIG: 'configFile',
  PYREACH_AGENT_SERVER: 'server',
  PYREACH_AGENT_STATE_DIR: 'stateDir',
  PYREACH_AGENT_LABELS: 'labels',
  PYREACH_AGENT_SCAN_INTERVAL_SECONDS: 'scanIntervalSeconds',
  PYREACH_AGENT_CHANGE_CHECK_SECONDS: 'changeCheckSeconds',
  PYREACH_AGENT_CA_FILE: 'caFile',
  PYREACH_AGENT_HEARTBEAT_SECONDS: 'heartbeatSeconds',
  PYREACH_AGENT_RECONNECT_MIN_MS: 'reconnect.minMs',
  PYREACH_AGENT_RECONNECT_MAX_MS: 'reconnect.maxMs',
  PYREACH_AGENT_CLOCK_SKEW_SECONDS: 'clockSkewSeconds',
  PYREACH_AGENT_MAX_CONCURRENT_JOBS: 'maxConcurrentJobs',
  PYREACH_AGENT_SHUTDOWN_GRACE_SECONDS: 'shutdownGraceSeconds',
  PYREACH_AGENT_ALLOWED_USERS: 'policy.allowedUsers',
  PYREACH_AGENT_ALLOW_ROOT: 'policy.allowRoot',
  PYREACH_AGENT_ALLOW_CUSTOM_CODE: 'policy.allowCustomCode',
  PYREACH_AGENT_MAX_CODE_BYTES: 'policy.maxCodeBytes',
  PYREACH_AGENT_ALLOW_WAKE: 'policy.allowWake',
  PYREACH_AGENT_INSPECT_ALLOWED_USERS: 'policy.inspect.allowedUsers',
  PYREACH_AGENT_INSPECT_ALLOW_ROOT: 'policy.inspect.allowRoot',
  PYREACH_AGENT_INSPECT_ALLOW_OPTED_OUT: 'policy.inspect.allowOptedOut',
  PYREACH_AGENT_INSPECT_DEADLINE_SECONDS: 'inspection.deadlineSeconds',
  PYREACH_AGENT_LOG_LEVEL: 'logLevel',
  PYREACH_AGENT_LOG_PRETTY: 'logPretty',
  // [k8s/health] apps/agent/src/k8s, apps/agent/src/health.ts
  PYREACH_AGENT_HOSTNAME: 'hostname',
  PYREACH_AGENT_JOIN_TOKEN_FILE: 'joinTokenFile',
  PYREACH_AGENT_HEALTH_LISTEN: 'health.listen',
  PYREACH_AGENT_READY_MAX_OUTBOX_DEPTH: 'health.readyMaxOutboxDepth',
  PYREACH_AGENT_KUBERNETES: 'kubernetes.mode',
  PYREACH_AGENT_NODE_NAME: 'kubernetes.nodeName',
} as const;

export type EnvName = keyof typeof ENV_SETTINGS;

/** The agent's variables as set (empty strings count as unset), nothing else from the environment. */
export function readAgentEnv(env: NodeJS.ProcessEnv = process.env): Partial<Record<EnvName, string>> {
  const out: Partial<Record<EnvName, string>> = {};
  for (const name of Object.keys(ENV_SETTINGS) as EnvName[]) {
    const v = env[name];
    if (v !== undefined && v !== '') out[name] = v;
  }
  return out;
}

// [k8s/health] What is not a setting: the in-cluster environment kubelet gives every pod, and a join token
// passed in the environment (a secret: never part of the configuration, its sources or its logs).

/** KUBERNETES_SERVICE_HOST/PORT, set by kubelet in every pod. */
export function readKubeEnv(env: NodeJS.ProcessEnv = process.env): {
  serviceHost?: string;
  servicePort?: string;
} {
  const out: { serviceHost?: string; servicePort?: string } = {};
  if (env.KUBERNETES_SERVICE_HOST) out.serviceHost = env.KUBERNETES_SERVICE_HOST;
  if (env.KUBERNETES_SERVICE_PORT) out.servicePort = env.KUBERNETES_SERVICE_PORT;
  return out;
}

/** PYREACH_AGENT_JOIN_TOKEN, for enrolment on the first `run` (PYREACH_AGENT_JOIN_TOKEN_FILE is preferred). */
export function readJoinTokenEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.PYREACH_AGENT_JOIN_TOKEN || undefined;
}
