/**
 * Configuration: defaults < file (/etc/pyreach/agent.json or --config) < environment (PYREACH_AGENT_*) < flags.
 * Every value is validated with zod once at start; an error names the setting and where its value came from.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { LabelKey, LabelValue, MAX_CODE_BYTES } from '@pyreach/protocol/common';
import { ENV_SETTINGS, type EnvName } from './env';
// [k8s/health] defaults of the in-cluster ServiceAccount files.
import { IN_CLUSTER_CA_FILE, IN_CLUSTER_TOKEN_FILE } from './k8s/client';

export const DEFAULT_CONFIG_FILE = '/etc/pyreach/agent.json';
export const DEFAULT_STATE_DIR = '/var/lib/pyreach-agent';

const LogLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** A user a job may target: a user name, a numeric uid, or "*" for any (root still needs allowRoot). */
const UserSpec = z.union([z.string().min(1).max(256), z.number().int().nonnegative()]);

/**
 * Who may be *inspected* (jobs with `action: inspect`: every thread's stack or the asyncio tasks, read from the
 * process's memory from outside; no code runs in it, it is never paused). Its own section because reading is
 * not running: a host owner may allow one and not the other.
 */
export const InspectPolicyConfig = z
  .object({
    /** Users whose processes may be inspected, by name or uid. Absent: the same as `policy.allowedUsers`. */
    allowedUsers: z.array(UserSpec).max(1024).optional(),
    /** Root processes may be inspected. Absent: the same as `policy.allowRoot`. */
    allowRoot: z.boolean().optional(),
    /**
     * Processes that disabled remote debugging (`PYTHON_DISABLE_REMOTE_DEBUG`, `-X disable_remote_debug`) opted
     * out of being looked into; reading their memory anyway needs this (default false: refused
     * POLICY_OPTED_OUT). Inspection works technically either way.
     */
    allowOptedOut: z.boolean().default(false),
  })
  .strict();
export type InspectPolicyConfig = z.infer<typeof InspectPolicyConfig>;

export const PolicyConfig = z
  .object({
    /** Users whose processes may be targeted, by name or uid; ["*"] = any user. */
    allowedUsers: z.array(UserSpec).max(1024).default(['*']),
    /** Processes running as root (any of real/effective uid 0) are refused unless this is true. */
    allowRoot: z.boolean().default(false),
    /**
     * false = only the built-in library scripts this agent ships with, byte for byte (see README). Default true:
     * custom code is the product's main use and is already gated by the control plane's policy and approvals;
     * owners of sensitive hosts turn it off here, where a compromised control plane cannot turn it back on.
     */
    allowCustomCode: z.boolean().default(true),
    maxCodeBytes: z.number().int().positive().max(MAX_CODE_BYTES).default(MAX_CODE_BYTES),
    /**
     * Jobs with `options.wake` may interrupt a blocked system call of a target thread (ptrace) so it picks the
     * run up. Default false: a C extension may not retry an interrupted call (docs/security.md).
     */
    allowWake: z.boolean().default(false),
    inspect: InspectPolicyConfig.default(InspectPolicyConfig.parse({})),
  })
  .strict();
export type PolicyConfig = z.infer<typeof PolicyConfig>;

/**
 * How inspections are read (not who may be read: that is `policy.inspect`). Each one runs in a child process
 * of the agent, which is killed at `deadlineSeconds`: a read the kernel blocks (a target that maps a file of its
 * own FUSE server under the reader) cannot be cut from inside the reading process.
 */
export const InspectionConfig = z
  .object({
    /** The reader's own time budget; past it the report is partial (DEADLINE_EXCEEDED), not lost. */
    readTimeoutSeconds: z.number().min(0.1).max(600).default(5),
    /** The child is killed this long after it was started (INSPECT_TIMEOUT). Includes the child's start-up. */
    deadlineSeconds: z.number().min(1).max(3600).default(20),
    /** Frames kept per thread or coroutine stack (the reader's bound, innermost first). */
    maxFrames: z.number().int().min(1).max(4096).default(512),
    /** Bytes the reader may read from one target for one report (its byte budget). */
    maxReadBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(1024 * 1024 * 1024)
      .default(64 * 1024 * 1024),
    /** Inspections read at once (each is a child process); more are refused BUSY. */
    maxConcurrent: z.number().int().min(1).max(16).default(2),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.deadlineSeconds <= c.readTimeoutSeconds)
      ctx.addIssue({
        code: 'custom',
        path: ['deadlineSeconds'],
        message: `must be more than inspection.readTimeoutSeconds (${c.readTimeoutSeconds}): the child needs time to start and to answer`,
      });
  });
export type InspectionConfig = z.infer<typeof InspectionConfig>;

// [k8s/health] Health endpoint and Kubernetes settings (apps/agent/src/health.ts, apps/agent/src/k8s).
export const HealthConfig = z
  .object({
    /** host:port, [v6]:port, :port (every interface) or off. Loopback by default; the DaemonSet uses :9476. */
    listen: z
      .string()
      .regex(
        /^(off|(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5})$/,
        'must be host:port, [v6]:port, :port or off',
      )
      .default('127.0.0.1:9476'),
    /** /readyz fails while more job events than this wait for the control plane's acknowledgement. */
    readyMaxOutboxDepth: z.number().int().min(0).max(1_000_000).default(1000),
    /** /healthz fails when the event loop stalled longer than this within the last 30 s. */
    livenessMaxLoopDelayMs: z.number().int().min(100).max(600_000).default(10_000),
  })
  .strict();
export const KubernetesConfig = z
  .object({
    /** auto: watch this node's pods when running in a pod with a ServiceAccount token; off: never. */
    mode: z.enum(['auto', 'off']).default('auto'),
    /** This node's name (downward API spec.nodeName): scopes the pod watch. */
    nodeName: z.string().min(1).max(253).optional(),
    /** API server URL; default from KUBERNETES_SERVICE_HOST/PORT. */
    apiServer: z.url().optional(),
    tokenFile: z.string().min(1).default(IN_CLUSTER_TOKEN_FILE),
    /** CA the API server's certificate must chain to; null = the system store. */
    caFile: z.string().min(1).nullable().default(IN_CLUSTER_CA_FILE),
  })
  .strict();

export const AgentConfig = z
  .object({
    server: z
      .url({
        message: 'must be an absolute http(s) URL of the control plane, e.g. https://pyreach.example.com',
      })
      .refine((u) => /^https?:\/\//.test(u), 'must start with http:// or https://')
      .optional(),
    stateDir: z.string().min(1).default(DEFAULT_STATE_DIR),
    labels: z.record(LabelKey, LabelValue).default({}),
    /** Full rediscovery of Python processes. */
    scanIntervalSeconds: z.number().min(1).max(86_400).default(60),
    /** Cheap check of the pid list between full scans; new pids are inspected at once. 0 disables it. */
    changeCheckSeconds: z.number().min(0).max(3600).default(3),
    /** PEM file of the CA that must have issued the control plane's certificate (pinned instead of the system store). */
    caFile: z.string().min(1).optional(),
    heartbeatSeconds: z.number().min(1).max(3600).default(15),
    reconnect: z
      .object({
        minMs: z.number().int().min(10).max(600_000).default(500),
        maxMs: z.number().int().min(10).max(3_600_000).default(30_000),
      })
      .strict()
      .default({ minMs: 500, maxMs: 30_000 }),
    /** Tolerated difference between this host's clock and the control plane's when checking notAfter. */
    clockSkewSeconds: z.number().min(0).max(600).default(30),
    maxConcurrentJobs: z.number().int().min(1).max(64).default(4),
    /** On SIGTERM: how long the job in hand may take to finish before it is cancelled and recorded. */
    shutdownGraceSeconds: z.number().min(0).max(3600).default(20),
    policy: PolicyConfig.default(PolicyConfig.parse({})),
    inspection: InspectionConfig.default(InspectionConfig.parse({})),
    logLevel: LogLevel.default('info'),
    logPretty: z.boolean().default(false),
    // [k8s/health]
    /** Host name reported at enrolment and in the inventory (default: the OS's). In a DaemonSet: the node's. */
    hostname: z.string().min(1).max(255).optional(),
    /** Join token file: `run` enrols with it first when the state directory has no identity yet. */
    joinTokenFile: z.string().min(1).optional(),
    health: HealthConfig.default(HealthConfig.parse({})),
    kubernetes: KubernetesConfig.default(KubernetesConfig.parse({})),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.reconnect.maxMs < c.reconnect.minMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['reconnect', 'maxMs'],
        message: `must be >= reconnect.minMs (${c.reconnect.minMs})`,
      });
    }
  });
export type AgentConfig = z.infer<typeof AgentConfig>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Flags that feed configuration (already parsed by the CLI). */
export interface ConfigFlags {
  config?: string;
  server?: string;
  stateDir?: string;
  labels?: string[];
  caFile?: string;
  logLevel?: string;
}

type Source = 'default' | 'file' | 'env' | 'flag';
type Raw = Record<string, unknown>;

function setPath(obj: Raw, path: string, value: unknown): void {
  const parts = path.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof o[p] !== 'object' || o[p] === null) o[p] = {};
    o = o[p] as Raw;
  }
  o[parts[parts.length - 1]!] = value;
}

/** `k=v,k2=v2` or a list of `k=v`. */
export function parseLabels(items: string[], where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError(`labels (${where}): "${item}" is not key=value`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function envValue(setting: string, name: EnvName, raw: string): unknown {
  const where = `environment variable ${name}`;
  const num = (): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || raw.trim() === '')
      throw new ConfigError(`${setting} (${where}): "${raw}" is not a number`);
    return n;
  };
  switch (setting) {
    case 'labels':
      return parseLabels([raw], where);
    case 'policy.allowRoot':
    case 'policy.allowCustomCode':
    case 'policy.allowWake':
    case 'policy.inspect.allowRoot':
    case 'policy.inspect.allowOptedOut':
    case 'logPretty': {
      const v = raw.toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new ConfigError(`${setting} (${where}): "${raw}" is not a boolean (true/false)`);
    }
    case 'policy.allowedUsers':
    case 'policy.inspect.allowedUsers':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    case 'scanIntervalSeconds':
    case 'changeCheckSeconds':
    case 'heartbeatSeconds':
    case 'reconnect.minMs':
    case 'reconnect.maxMs':
    case 'clockSkewSeconds':
    case 'maxConcurrentJobs':
    case 'shutdownGraceSeconds':
    case 'policy.maxCodeBytes':
    case 'inspection.deadlineSeconds':
    case 'health.readyMaxOutboxDepth': // [k8s/health]
      return num();
    default:
      return raw;
  }
}

function flattenKeys(obj: unknown, prefix = ''): string[] {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return prefix ? [prefix] : [];
  const keys: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const p = prefix ? `${prefix}.${k}` : k;
    // labels are one setting (their keys are data), not nested settings
    if (p === 'labels') keys.push(p);
    else keys.push(...flattenKeys(v, p));
  }
  return keys;
}

export interface LoadedConfig {
  config: AgentConfig;
  /** Where each explicitly set value came from, for `status` and error messages. */
  sources: Record<string, string>;
  configFile: string | null;
}

/**
 * Merge and validate. `env` is the output of readAgentEnv(); `readFile` is injectable for tests.
 * A missing default config file is fine; a missing explicitly named one is an error.
 */
export function loadConfig(
  flags: ConfigFlags,
  env: Partial<Record<EnvName, string>>,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): LoadedConfig {
  const raw: Raw = {};
  const sources: Record<string, string> = {};
  const record = (path: string, value: unknown, source: Source, where: string): void => {
    if (path === 'labels' && typeof raw.labels === 'object' && raw.labels !== null) {
      value = { ...(raw.labels as Raw), ...(value as Raw) };
    }
    setPath(raw, path, value);
    sources[path] = source === 'default' ? 'default' : where;
  };

  // 1. file
  const explicit = flags.config ?? env.PYREACH_AGENT_CONFIG;
  const configFile = explicit ?? DEFAULT_CONFIG_FILE;
  const fileWhere = flags.config
    ? `--config ${configFile}`
    : env.PYREACH_AGENT_CONFIG
      ? `file ${configFile} (PYREACH_AGENT_CONFIG)`
      : `file ${configFile}`;
  let loadedFile: string | null = null;
  let text: string | null = null;
  try {
    text = readFile(configFile);
    loadedFile = configFile;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (explicit || code !== 'ENOENT')
      throw new ConfigError(
        `configuration file ${configFile}: cannot read (${code ?? (e as Error).message})`,
      );
  }
  if (text !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`configuration file ${configFile}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`configuration file ${configFile}: must hold a JSON object`);
    }
    for (const key of flattenKeys(parsed)) {
      const value = key.split('.').reduce<unknown>((o, k) => (o as Raw)[k], parsed);
      record(key, value, 'file', fileWhere);
    }
  }

  // 2. environment
  for (const [name, setting] of Object.entries(ENV_SETTINGS) as [EnvName, string][]) {
    if (setting === 'configFile') continue;
    const v = env[name];
    if (v === undefined) continue;
    record(setting, envValue(setting, name, v), 'env', `environment variable ${name}`);
  }

  // 3. flags
  if (flags.server !== undefined) record('server', flags.server, 'flag', '--server');
  if (flags.stateDir !== undefined) record('stateDir', flags.stateDir, 'flag', '--state-dir');
  if (flags.labels?.length) record('labels', parseLabels(flags.labels, '--label'), 'flag', '--label');
  if (flags.caFile !== undefined) record('caFile', flags.caFile, 'flag', '--ca-file');
  if (flags.logLevel !== undefined) record('logLevel', flags.logLevel, 'flag', '--log-level');

  const result = AgentConfig.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const path = issue.path.map(String);
      // The source of the closest recorded ancestor (labels.env → labels).
      let source = 'default';
      for (let i = path.length; i > 0; i--) {
        const s = sources[path.slice(0, i).join('.')];
        if (s) {
          source = s;
          break;
        }
      }
      const setting = path.join('.') || '(root)';
      if (issue.code === 'unrecognized_keys') {
        return `${setting === '(root)' ? '' : setting + ': '}unknown setting(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} (${fileWhere})`;
      }
      return `${setting} (${source}): ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return { config: result.data, sources, configFile: loadedFile };
}
