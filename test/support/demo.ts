/**
 * `npm run demo` as a newcomer runs it: from a fresh clone of this checkout (dependencies hard-linked from here
 * instead of downloaded again; the demo's own `npm install` path is plain npm), with helpers to see what it left
 * running.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, pythonPath } from './python';

const WORKSPACES = [
  '.',
  'apps/web',
  'apps/agent',
  'packages/db',
  'packages/remote-exec',
  'packages/protocol',
  'packages/scripts',
  'test',
];

export interface DemoClone {
  dir: string;
  clone: string;
  /** Every process whose cwd or command line mentions the clone: what "nothing left running" means. */
  processes(): string[];
  /** SIGKILLs whatever of the clone still runs, removes the directory. */
  cleanup(): void;
}

export function cloneForDemo(): DemoClone {
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-demo-'));
  const clone = join(dir, 'clone');
  execFileSync('git', ['clone', '--quiet', REPO_ROOT, clone]);
  for (const ws of WORKSPACES) {
    const from = join(REPO_ROOT, ws, 'node_modules');
    if (existsSync(from)) execFileSync('cp', ['-al', from, join(clone, ws, 'node_modules')]);
  }
  const processes = (): string[] => {
    const found: string[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      try {
        const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
        let cwd = '';
        try {
          cwd = readlinkSync(`/proc/${name}/cwd`);
        } catch {
          /* kernel thread or gone */
        }
        if (cmdline.includes(clone) || cwd.startsWith(clone)) found.push(`${name}: ${cmdline.trim()}`);
      } catch {
        /* exited while we looked */
      }
    }
    return found;
  };
  return {
    dir,
    clone,
    processes,
    cleanup() {
      for (const line of processes()) {
        try {
          process.kill(Number(line.split(':')[0]), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RunningDemo {
  child: ChildProcess;
  data: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Ctrl-C in a terminal: SIGINT to the whole foreground group (npm, the shell, the demo). */
  ctrlC(): void;
  /** The demo's own output and the tail of each log it keeps, for failure messages. */
  diagnostics(): string;
}

export function startDemo(c: DemoClone, opts: { data: string; port: number; args?: string[] }): RunningDemo {
  let out = '';
  const child = spawn(
    'npm',
    ['run', '--silent', 'demo', ...(opts.args?.length ? ['--', ...opts.args] : [])],
    {
      cwd: c.clone,
      env: {
        ...process.env,
        PYREACH_PYTHON: pythonPath(),
        PYREACH_DEMO_PORT: String(opts.port),
        PYREACH_DEMO_DATA: opts.data,
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, like a terminal's foreground job: Ctrl-C reaches all of it
    },
  );
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    data: opts.data,
    output: () => out,
    exited,
    ctrlC: () => process.kill(-child.pid!, 'SIGINT'),
    diagnostics() {
      const tails = ['web.log', 'agent.log', 'service.log']
        .map((f) => join(opts.data, f))
        .filter((f) => existsSync(f))
        .map((f) => `--- ${f} (tail) ---\n${readFileSync(f, 'utf8').slice(-3000)}`);
      return [`--- demo output ---\n${out.slice(-4000)}`, ...tails].join('\n');
    },
  };
}
