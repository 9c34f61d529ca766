#!/usr/bin/env node
/**
 * pyreach-agent: enroll | run | status. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error,
 * 78 revoked by the control plane (systemd keeps it down).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readAuditTail } from './audit';
import {
  ConfigError,
  DEFAULT_CONFIG_FILE,
  DEFAULT_STATE_DIR,
  loadConfig,
  type ConfigFlags,
  type LoadedConfig,
} from './config';
import { enroll, EnrollError } from './enroll';
import { readAgentEnv, readJoinTokenEnv, readKubeEnv } from './env';
// [k8s/health] first-start enrolment, pod facts, the health and metrics endpoint
import { AgentMetrics, instrumentEngine, serviceHealthSource, startHealthServer } from './health';
import { BootstrapError, enrolOnFirstStart, readTokenFile } from './k8s/bootstrap';
import { podAwareEngine, startKubernetes } from './k8s/index';
import { IdentityError, loadIdentity, readIdentity } from './identity';
import { createLogger } from './logger';
import { Outbox } from './outbox';
import { AgentService, STATUS_FILE, type AgentStatus } from './service';
import { AGENT_VERSION } from './version';

const COMMON_OPTIONS = {
  config: { type: 'string' },
  'state-dir': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const USAGE = `pyreach-agent ${AGENT_VERSION} — Pyreach host agent

Usage:
  pyreach-agent enroll --server URL --token TOKEN [--label k=v ...]   enrol this host (once)
  pyreach-agent run                                                  connect and serve jobs
  pyreach-agent status [--json]                                      identity, connection, last jobs
  pyreach-agent <command> --help

Options for every command:
  --config FILE      configuration file (default ${DEFAULT_CONFIG_FILE}; env PYREACH_AGENT_CONFIG)
  --state-dir DIR    state directory (default ${DEFAULT_STATE_DIR}; env PYREACH_AGENT_STATE_DIR)
  --log-level LEVEL  fatal|error|warn|info|debug|trace|silent
  -h, --help         this help

Configuration: file < environment (PYREACH_AGENT_*) < flags. See apps/agent/README.md.`;

const HELP: Record<string, string> = {
  enroll: `pyreach-agent enroll --server URL --token TOKEN [--label k=v ...] [--ca-file PEM]

Generates this host's Ed25519 key pair in the state directory (private key mode 0600), presents the one-time
join token and the public key to the control plane (POST /api/agents/enroll), pins the control plane's
job-signing key and saves the agent's identity. Re-running keeps the existing key pair.

  --server URL     control plane URL (or env PYREACH_AGENT_SERVER / "server" in the config file)
  --token TOKEN    join token from an admin (never logged)
  --token-file F   read the token from file F instead (keeps it off the command line, which every local
                   user can read)
  --label k=v      host label, repeatable (e.g. --label env=prod --label team=payments)
  --ca-file PEM    CA that must have issued the control plane's TLS certificate`,
  run: `pyreach-agent run [--server URL] [--ca-file PEM]

Connects to the control plane (socket.io over websocket, outbound only), reports the Python processes of this
host, verifies and runs signed jobs under the local policy, and keeps every result in a durable outbox until
the control plane acknowledged it. SIGTERM/SIGINT: stop taking jobs, finish or record the job in hand, flush
the outbox, exit 0.

Not enrolled yet and a join token given (PYREACH_AGENT_JOIN_TOKEN_FILE / "joinTokenFile", or
PYREACH_AGENT_JOIN_TOKEN): enrols first, then runs — how a DaemonSet or compose starts it.
Serves /healthz, /readyz and /metrics on health.listen (default 127.0.0.1:9476; "off" disables).`,
  status: `pyreach-agent status [--json]

Shows the identity, the pinned signing key id, the connection state last written by "run", the outbox depth
and the last jobs from the local audit log (<state-dir>/audit.jsonl).`,
};

function fail(message: string, code = 2): never {
  process.stderr.write(`pyreach-agent: ${message}\n`);
  process.exit(code);
}

function load(values: Record<string, unknown>, extra: Partial<ConfigFlags> = {}): LoadedConfig {
  const flags: ConfigFlags = { ...extra };
  if (typeof values.config === 'string') flags.config = values.config;
  if (typeof values['state-dir'] === 'string') flags.stateDir = values['state-dir'];
  if (typeof values['log-level'] === 'string') flags.logLevel = values['log-level'];
  try {
    return loadConfig(flags, readAgentEnv());
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
}

async function cmdEnroll(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...COMMON_OPTIONS,
      server: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' }, // [k8s] keeps the token off the command line
      label: { type: 'string', multiple: true },
      'ca-file': { type: 'string' },
    },
    strict: true,
  });
  if (values.help) return void console.log(HELP.enroll);
  // [k8s] --token-file: a token on the command line is readable by every local user (/proc/PID/cmdline).
  if (values['token-file'] && !values.token) {
    try {
      values.token = readTokenFile(values['token-file']);
    } catch (e) {
      if (e instanceof BootstrapError) fail(e.message);
      throw e;
    }
  }
  if (!values.token)
    fail('enroll: --token or --token-file is required (a join token from the control plane)');
  const extra: Partial<ConfigFlags> = {};
  if (values.server) extra.server = values.server;
  if (values.label) extra.labels = values.label;
  if (values['ca-file']) extra.caFile = values['ca-file'];
  const { config } = load(values, extra);
  try {
    const id = await enroll(config, values.token);
    console.log(
      `enrolled as agent ${id.agentId} with ${id.server}; pinned signing key ${id.signingKeyId.slice(0, 16)}…; state in ${config.stateDir}`,
    );
  } catch (e) {
    if (e instanceof EnrollError) fail(e.message, 1);
    if (e instanceof IdentityError) fail(e.message, 2);
    throw e;
  }
}

async function cmdRun(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { ...COMMON_OPTIONS, server: { type: 'string' }, 'ca-file': { type: 'string' } },
    strict: true,
  });
  if (values.help) return void console.log(HELP.run);
  const extra: Partial<ConfigFlags> = {};
  if (values.server) extra.server = values.server;
  if (values['ca-file']) extra.caFile = values['ca-file'];
  const { config, configFile, sources } = load(values, extra);
  // [k8s] enrol on the first start when a join token is provided (DaemonSet, compose): k8s/bootstrap.ts
  try {
    const first = await enrolOnFirstStart(config, readJoinTokenEnv());
    if (first === 'enrolled')
      process.stdout.write(`pyreach-agent: enrolled on first start; state in ${config.stateDir}\n`);
  } catch (e) {
    if (e instanceof BootstrapError) fail(e.message, 1);
    throw e;
  }
  let identity;
  try {
    identity = loadIdentity(config.stateDir);
  } catch (e) {
    if (e instanceof IdentityError) fail(e.message, 2);
    throw e;
  }
  const log = createLogger(config.logLevel, { agentId: identity.agentId });
  log.info(
    {
      version: AGENT_VERSION,
      configFile,
      stateDir: config.stateDir,
      server: config.server ?? identity.server,
      policy: config.policy,
    },
    'starting',
  );
  const { realEngine } = await import('./engine');
  // [k8s/health] pod facts added to discovery, job metrics around the engine and from the audit log, and
  // the health endpoint (started before the initial scan so liveness answers during it).
  const kube = startKubernetes(config, readKubeEnv(), log);
  let running: AgentService | null = null;
  const metrics = new AgentMetrics(() => (running ? serviceHealthSource(running, kube) : null));
  const engine = instrumentEngine(podAwareEngine(realEngine, kube), metrics);
  // Inspections are read by this same program run again as a child (the bundle needs nothing beside it).
  const { ChildInspector, selfCommand } = await import('./inspect');
  const inspector = new ChildInspector(selfCommand(process.execPath, process.execArgv, process.argv[1]!));
  const service = new AgentService(config, identity, engine, log, {
    onAudit: (e) => metrics.observeAudit(e),
    inspector,
  });
  running = service;
  const health = await startHealthServer({
    listen: config.health.listen,
    source: () => serviceHealthSource(service, kube),
    metrics,
    readyMaxOutboxDepth: config.health.readyMaxOutboxDepth,
    livenessMaxLoopDelayMs: config.health.livenessMaxLoopDelayMs,
    log,
  }).catch((e: unknown) => {
    const why = `health.listen ${config.health.listen}: ${(e as Error).message}`;
    // An address the operator chose must work; the default one may be taken (another agent, a test run).
    if (sources['health.listen'] || sources.health) fail(why);
    log.error(
      { reason: why },
      'health endpoint not started (default address unavailable); set health.listen',
    );
    return null;
  });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal: sig }, 'second signal: exiting now; the journal keeps what was not delivered');
      process.exit(1);
    }
    void service.stop(sig);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await service.start();
  const code = await service.stopped;
  await health?.close(); // [k8s/health]
  await kube.stop();
  process.exit(code);
}

function cmdStatus(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: { ...COMMON_OPTIONS, json: { type: 'boolean' }, jobs: { type: 'string' } },
    strict: true,
  });
  if (values.help) return void console.log(HELP.status);
  const { config } = load(values);
  const identity = readIdentity(config.stateDir);
  let status: AgentStatus | null = null;
  const statusPath = join(config.stateDir, STATUS_FILE);
  if (existsSync(statusPath)) status = JSON.parse(readFileSync(statusPath, 'utf8')) as AgentStatus;
  let running = false;
  if (status) {
    try {
      process.kill(status.pid, 0);
      running = status.state !== 'stopped' && status.state !== 'revoked';
    } catch {
      running = false;
    }
  }
  let depth = 0;
  let oldest: number | null = null;
  if (existsSync(join(config.stateDir, 'jobs'))) {
    const o = new Outbox(config.stateDir);
    o.open();
    depth = o.depth();
    oldest = o.oldestAgeSeconds();
    o.close();
  }
  const jobs = readAuditTail(config.stateDir, Number(values.jobs ?? 10));
  const out = {
    stateDir: config.stateDir,
    enrolled: identity !== null,
    agentId: identity?.agentId ?? null,
    server: config.server ?? identity?.server ?? null,
    pinnedSigningKeyId: identity?.signingKeyId ?? null,
    enrolledAt: identity?.enrolledAt ?? null,
    process: status ? { pid: status.pid, running } : null,
    connection: status
      ? {
          state: running ? status.state : status.state === 'revoked' ? 'revoked' : 'not running',
          since: status.since,
          lastError: status.lastError,
          lastConnectedAt: status.lastConnectedAt,
          updatedAt: status.updatedAt,
        }
      : null,
    outboxDepth: depth,
    outboxOldestAgeSeconds: oldest,
    queuedJobs: running ? (status?.queuedJobs ?? []) : [],
    protocolVersion: status?.protocolVersion ?? null,
    processes: status?.processes ?? null,
    lastJobs: jobs,
  };
  if (values.json) return void console.log(JSON.stringify(out, null, 2));
  const lines = [
    `state dir:      ${out.stateDir}`,
    `enrolled:       ${out.enrolled ? `yes, agent ${out.agentId} (since ${out.enrolledAt})` : 'no — run "pyreach-agent enroll"'}`,
    `server:         ${out.server ?? '-'}`,
    `pinned key id:  ${out.pinnedSigningKeyId ?? '-'}`,
    `connection:     ${out.connection ? `${out.connection.state} since ${out.connection.since}${out.connection.lastError ? ` (last error: ${out.connection.lastError})` : ''}` : 'never run'}`,
    `agent process:  ${out.process ? `pid ${out.process.pid} ${out.process.running ? 'running' : 'not running'}` : '-'}`,
    `outbox depth:   ${out.outboxDepth}${oldest !== null ? ` (oldest waiting ${oldest} s)` : ''}`,
    `protocol:       ${out.protocolVersion !== null ? `v${out.protocolVersion} announced${out.protocolVersion < 2 ? ' (the control plane does not speak v2)' : ''}` : '-'}`,
    `python procs:   ${out.processes ?? '-'}`,
    `last jobs:`,
    ...(jobs.length
      ? jobs.map(
          (j) =>
            `  ${j.at} ${j.event.padEnd(10)} ${j.jobId ?? '-'} ${j.outcome ?? ''}${j.code ? ' ' + j.code : ''}${j.target ? ` pid ${j.target.pid}` : ''}`,
        )
      : ['  (none)']),
  ];
  console.log(lines.join('\n'));
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'enroll':
      return cmdEnroll(rest);
    case 'run':
      return cmdRun(rest);
    case 'status':
      return cmdStatus(rest);
    case '__inspect-child': {
      // Hidden: the reading child of an inspection job (src/inspect.ts). Not for people.
      const { inspectChildMain } = await import('./inspect');
      process.exit(await inspectChildMain(rest));
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(rest[0] && HELP[rest[0]] ? HELP[rest[0]] : USAGE);
      return;
    case '--version':
    case 'version':
      console.log(AGENT_VERSION);
      return;
    default:
      fail(`unknown command "${cmd}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) fail((e as Error).message);
  process.stderr.write(`pyreach-agent: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
