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
  PYREACH_AGENT_LOG_LEVEL: 'logLevel',
  PYREACH_AGENT_LOG_PRETTY: 'logPretty',
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
