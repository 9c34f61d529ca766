/**
 * `npm run demo` (after scripts/demo.sh found Python and dependencies): the whole system on the embedded
 * database, on this machine.
 *
 *   1. builds the dashboard once (Next.js production build; later runs reuse it),
 *   2. migrates the embedded PGlite database under the demo data directory and seeds three users
 *      (admin, operator, approver) with fresh random passwords, printed once,
 *   3. starts the control plane, enrols a local agent with a one-time join token and starts it,
 *   4. starts the demo Python service (demo/service.py) and says what to open and what to try.
 *
 * Ctrl-C (or SIGTERM) stops everything it started; nothing is left running. Each child runs in its own process
 * group and their pids are kept in <data>/pids.json, so a demo killed with SIGKILL is cleaned up by the next.
 *
 * Environment: PYREACH_PYTHON (set by demo.sh), PYREACH_DEMO_PORT (3000), PYREACH_DEMO_DATA (./data/demo),
 * PYREACH_DEMO_HOST (127.0.0.1). Flags: --reset (start from an empty database), --no-build (API only).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    reset: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help) {
  console.log(
    'npm run demo [-- --reset] [-- --no-build]\n  --reset     wipe the demo data directory first\n  --no-build  skip the dashboard build (API and sockets only)',
  );
  process.exit(0);
}

const PYTHON = process.env.PYREACH_PYTHON;
if (!PYTHON)
  fatal('PYREACH_PYTHON is not set; run the demo with `npm run demo`, which finds or provisions Python 3.14');
const PORT = Number(process.env.PYREACH_DEMO_PORT ?? 3000);
const HOST = process.env.PYREACH_DEMO_HOST ?? '127.0.0.1';
const DATA = path.resolve(process.env.PYREACH_DEMO_DATA ?? path.join(ROOT, 'data', 'demo'));
const URL_BASE = `http://${HOST === '0.0.0.0' ? '127.0.0.1' : HOST}:${PORT}`;
const PIDS_FILE = path.join(DATA, 'pids.json');
const AGENT_STATE = path.join(DATA, 'agent');
const TSX = ['--import', 'tsx'];

type Env = Record<string, string | undefined>;

const children: { name: string; child: ChildProcess }[] = [];
let stopping = false;

function say(msg: string): void {
  process.stdout.write(`demo: ${msg}\n`);
}

function fatal(msg: string): never {
  process.stderr.write(`demo: ${msg}\n`);
  process.exit(1);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills process groups left by a previous demo that was itself killed without a chance to clean up. */
function reapLeftovers(): void {
  if (!existsSync(PIDS_FILE)) return;
  let pids: number[] = [];
  try {
    pids = JSON.parse(readFileSync(PIDS_FILE, 'utf8')) as number[];
  } catch {
    /* unreadable: nothing to reap */
  }
  for (const pid of pids) {
    if (!alive(pid)) continue;
    say(`stopping process group ${pid} left by an earlier demo`);
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  rmSync(PIDS_FILE, { force: true });
}

function recordPids(): void {
  writeFileSync(PIDS_FILE, JSON.stringify(children.map((c) => c.child.pid).filter(Boolean)));
}

function start(
  name: string,
  cmd: string,
  args: string[],
  opts: { env?: Env; log?: string; echo?: boolean } = {},
): ChildProcess {
  // A Ctrl-C during start-up: nothing new is started while stopAll stops what is running.
  if (stopping) throw new Error(`not starting ${name}: stopping`);
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: one kill stops the child and everything it started
  });
  const log = opts.log ? createWriteStream(opts.log, { flags: 'a' }) : null;
  const forward = (stream: NodeJS.ReadableStream) => {
    stream.on('data', (chunk: Buffer) => {
      log?.write(chunk);
      if (opts.echo)
        for (const line of chunk.toString('utf8').split('\n'))
          if (line.trim()) process.stdout.write(`[${name}] ${line}\n`);
    });
  };
  if (child.stdout) forward(child.stdout);
  if (child.stderr) forward(child.stderr);
  children.push({ name, child });
  recordPids();
  child.on('exit', (code, signal) => {
    log?.end();
    if (stopping) return;
    process.stderr.write(
      `demo: ${name} exited (${signal ?? `code ${code}`}); see ${opts.log ?? 'the output above'}. Stopping everything.\n`,
    );
    void stopAll(1);
  });
  return child;
}

let stopped: Promise<never> | null = null;

/**
 * Stops every child (reverse start order, SIGTERM to each process group, SIGKILL after 10 s) and exits.
 * Idempotent: a terminal's Ctrl-C reaches both npm and this process (npm forwards it too), so a second
 * signal must wait for the same shutdown, not cut it short.
 */
function stopAll(exitCode: number): Promise<never> {
  stopped ??= (async (): Promise<never> => {
    stopping = true;
    say('stopping everything it started…');
    // Reverse order: demo service, agent, then the control plane (the agent flushes to it first).
    for (const { child } of [...children].reverse()) {
      if (child.pid && alive(child.pid)) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
      }
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && children.some(({ child }) => child.pid && alive(child.pid))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const { name, child } of children) {
      if (child.pid && alive(child.pid)) {
        say(`${name} did not stop in time; killing it`);
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    rmSync(PIDS_FILE, { force: true });
    say('stopped.');
    process.exit(exitCode);
  })();
  return stopped;
}

async function waitForHealth(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${URL_BASE}/api/health`);
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `the control plane did not become healthy at ${URL_BASE} within ${timeoutMs / 1000}s (${last}); see ${path.join(DATA, 'web.log')}`,
  );
}

/**
 * Runs one start-up step (build, seed, enrolment) to completion, asynchronously and in its own process group,
 * tracked like the long-running children: a Ctrl-C in the middle stops the step *and* everything started
 * before it. (A blocking spawnSync here kept the signal handler from running: the step died of the terminal's
 * SIGINT, the demo reported it as a failure and exited, and the control plane it had started kept running.)
 */
async function step(
  name: string,
  cmd: string,
  args: string[],
  opts: { env?: Env; capture?: boolean } = {},
): Promise<string> {
  if (stopping) return new Promise<never>(() => undefined);
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', opts.capture ? 'pipe' : 'inherit', 'inherit'],
    detached: true,
  });
  const entry = { name, child };
  children.push(entry);
  recordPids();
  let stdout = '';
  child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  const end = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
    (resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => resolve({ code, signal }));
    },
  );
  children.splice(children.indexOf(entry), 1);
  recordPids();
  // Stopped by a signal to the demo: stopAll is already on its way to exit; this step did not fail.
  if (stopping) return new Promise<never>(() => undefined);
  if (end.code !== 0) {
    process.stderr.write(
      `demo: ${name} failed (${end.error?.message ?? end.signal ?? `exit ${end.code}`}). Stopping everything.\n`,
    );
    return stopAll(1);
  }
  return stdout;
}

function serverEnv(): Env {
  const secretFile = path.join(DATA, 'auth-secret');
  if (!existsSync(secretFile)) writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  return {
    NODE_ENV: 'production',
    HOST,
    PORT: String(PORT),
    PUBLIC_URL: URL_BASE,
    PYREACH_DATA_DIR: path.join(DATA, 'server'),
    BETTER_AUTH_SECRET: readFileSync(secretFile, 'utf8').trim(),
    DATABASE_URL: '',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    PYREACH_UI: flags['no-build'] ? 'api' : 'next',
  };
}

interface SeededUser {
  email: string;
  role: string;
  password: string | null;
}

/**
 * Seeds users and, when the local agent is not enrolled yet, a join token for it (apps/web/scripts/demo-seed.ts).
 * Runs before the server starts because the embedded database belongs to one process at a time.
 */
async function seed(env: Env, needToken: boolean): Promise<{ users: SeededUser[]; token: string | null }> {
  const args = [...TSX, 'apps/web/scripts/demo-seed.ts', '--demo', ...(needToken ? ['--join-token'] : [])];
  const stdout = await step('seeding the demo database', process.execPath, args, { env, capture: true });
  const line = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as { users: SeededUser[]; token: string | null };
}

async function main(): Promise<void> {
  let signals = 0;
  const onSignal = () => {
    // The first two are one Ctrl-C seen twice (directly and forwarded by npm); a third means "now".
    if (++signals >= 3) {
      for (const { child } of children)
        if (child.pid && alive(child.pid)) process.kill(-child.pid, 'SIGKILL');
      process.exit(130);
    }
    void stopAll(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (process.getuid?.() !== 0) {
    say(
      'note: not running as root — the local agent can only inject into processes it may ptrace (same user, and Yama ptrace_scope 0)',
    );
  }
  if (flags.reset && existsSync(DATA)) {
    say(`--reset: removing ${DATA}`);
    reapLeftovers();
    rmSync(DATA, { recursive: true, force: true });
  }
  mkdirSync(DATA, { recursive: true, mode: 0o700 });
  reapLeftovers();

  if (!flags['no-build'] && !existsSync(path.join(ROOT, 'apps/web/.next/BUILD_ID'))) {
    say('building the dashboard (first run only; a few minutes on a small machine)…');
    await step('dashboard build', 'npm', ['run', '--silent', '-w', 'apps/web', 'build'], {
      env: { NEXT_TELEMETRY_DISABLED: '1' },
    });
  }

  const env = serverEnv();
  const enrolled = existsSync(path.join(AGENT_STATE, 'identity.json'));
  say('migrating the embedded database and seeding demo users…');
  const { users, token } = await seed(env, !enrolled);

  say(`starting the control plane on ${URL_BASE} (log: ${path.join(DATA, 'web.log')})`);
  start('control-plane', process.execPath, [...TSX, 'apps/web/server.ts'], {
    env,
    log: path.join(DATA, 'web.log'),
  });
  await waitForHealth(120_000);
  if (stopping) return;

  const agentArgs = [...TSX, 'apps/agent/src/cli.ts'];
  const agentEnv = {
    PYREACH_AGENT_STATE_DIR: AGENT_STATE,
    PYREACH_AGENT_CONFIG: path.join(DATA, 'agent.json'),
  };
  if (!existsSync(agentEnv.PYREACH_AGENT_CONFIG)) {
    // The host owner's local policy. The demo service runs as whoever started the demo — root on a fresh
    // Debian box — so root targets are allowed here; on a real host keep allowRoot false (the default).
    const policy = { allowCustomCode: true, allowRoot: process.getuid?.() === 0 };
    writeFileSync(agentEnv.PYREACH_AGENT_CONFIG, `${JSON.stringify({ policy }, null, 2)}\n`);
  }
  if (token) {
    say('enrolling the local agent…');
    await step(
      'agent enrolment',
      process.execPath,
      [...agentArgs, 'enroll', '--server', URL_BASE, '--token', token, '--label', 'env=demo'],
      { env: agentEnv },
    );
  }
  say(`starting the local agent (log: ${path.join(DATA, 'agent.log')})`);
  start('agent', process.execPath, [...agentArgs, 'run'], {
    env: agentEnv,
    log: path.join(DATA, 'agent.log'),
  });

  const serviceLog = path.join(DATA, 'service.log');
  say(`starting the demo service with ${PYTHON} (log: ${serviceLog})`);
  const service = start('demo-service', PYTHON!, [path.join(ROOT, 'demo/service.py')], {
    env: { PYTHONUNBUFFERED: '1' },
    log: serviceLog,
  });
  writeFileSync(path.join(DATA, 'service.pid'), String(service.pid));

  const creds = users
    .map(
      (u) =>
        `    ${u.role.padEnd(9)} ${u.email.padEnd(24)} ${u.password ?? '(password shown on the first run; `npm run demo -- --reset` starts over)'}`,
    )
    .join('\n');
  process.stdout.write(`
──────────────────────────────────────────────────────────────────────────────
 Pyreach is running.

  Open ${URL_BASE} and sign in. Demo users (passwords are shown once):
${creds}

  Try this:
    1. As operator: New request → target the process running demo/service.py (pid ${service.pid}),
       script "Set a logger's level", logger demo.orders, level DEBUG, give a reason, submit.
    2. In another browser (or a private window) as approver: Approvals → approve it.
    3. Watch the output arrive live, then: tail -f ${serviceLog}
       The "order … failed" errors now come with the DEBUG line that explains them.
    4. Audit → verify the chain, export the story.

  Ctrl-C stops everything.
──────────────────────────────────────────────────────────────────────────────
`);
  say(`ready ${JSON.stringify({ url: URL_BASE, servicePid: service.pid, users })}`);
}

main().catch((err: unknown) => {
  if (!stopping) process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
  void stopAll(1);
});
