/**
 * Starts the REAL control-plane server process (apps/web/server.ts under tsx, API-only mode so no Next.js
 * build is needed) on a free loopback port against embedded PGlite in a temp dir or a fresh, uniquely named
 * PostgreSQL database, seeds one user per role first, and tears everything down again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '@pyreach/db/testing';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WEB = path.join(REPO_ROOT, 'apps/web');
const TSX = path.join(REPO_ROOT, 'node_modules/.bin/tsx');

export type DbKind = 'pglite' | 'postgres';

/** Users the seed creates (npm run -w apps/web seed); password shared in tests. */
export const SEED_PASSWORD = 'correct-horse-battery-staple';
export const USERS = {
  admin: 'admin@pyreach.test',
  operator: 'operator@pyreach.test',
  operator2: 'operator2@pyreach.test',
  approver: 'approver@pyreach.test',
  approver2: 'approver2@pyreach.test',
  viewer: 'viewer@pyreach.test',
} as const;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', reject);
    p.once('exit', (code) => resolve({ code, out }));
  });
}

export interface ControlPlane {
  kind: DbKind;
  baseUrl: string;
  port: number;
  env: NodeJS.ProcessEnv;
  /** Direct database access (PostgreSQL only; PGlite is owned by the server process). */
  db: TestDatabase | null;
  proc: ChildProcess;
  logs: () => string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Stops the server and removes the database / data directory. */
  cleanup(): Promise<void>;
  /** Starts the server again on the same database and port (restart tests). */
  restart(): Promise<void>;
}

export async function runSeed(
  env: NodeJS.ProcessEnv,
  extra: string[] = [],
): Promise<{ code: number | null; out: string }> {
  return run(TSX, ['scripts/seed.ts', ...extra], env, WEB);
}

export async function startControlPlane(
  kind: DbKind,
  extraEnv: Record<string, string> = {},
  opts: {
    /**
     * PostgreSQL: `'separate'` runs the server as production does — migrating as the owner role
     * (DATABASE_MIGRATION_URL = db.ownerLocation) and connecting as an app role that may only INSERT and
     * SELECT on the audit trail (DATABASE_URL = db.location). Default `'single'`: one role does everything.
     */
    roles?: 'single' | 'separate';
    /** A port chosen beforehand (freePort), when something must know the URL first (an OIDC client's callback). */
    port?: number;
  } = {},
): Promise<ControlPlane> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'pyreach-web-'));
  const db =
    kind === 'postgres' ? await createTestDatabase('postgres', { poolSize: 2, roles: opts.roles }) : null;
  const port = opts.port ?? (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: String(port),
    PUBLIC_URL: baseUrl,
    PYREACH_UI: 'api',
    PYREACH_DATA_DIR: dataDir,
    LOG_LEVEL: process.env.PYREACH_TEST_LOG_LEVEL ?? 'warn',
    PYREACH_DISPATCH_INTERVAL_MS: '300',
    PYREACH_AGENT_GRACE_SECONDS: '2',
    PYREACH_SEED_PASSWORD: SEED_PASSWORD,
    PYREACH_SEED_USERS: JSON.stringify(
      Object.entries(USERS).map(([k, email]) => ({ email, name: k, role: k.replace(/\d+$/, '') })),
    ),
    ...(db ? { DATABASE_URL: db.location } : {}),
    ...(db && opts.roles === 'separate' ? { DATABASE_MIGRATION_URL: db.ownerLocation } : {}),
    ...extraEnv,
  };
  const seeded = await runSeed(env);
  if (seeded.code !== 0) throw new Error(`seed failed (${seeded.code}):\n${seeded.out}`);

  let logs = '';
  let proc!: ChildProcess;
  const launch = async () => {
    proc = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
      cwd: WEB,
      env,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    proc.stdout?.on('data', (d: Buffer) => (logs += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (logs += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`server did not start in 60 s:\n${logs}`)), 60_000);
      proc.on('message', (m: { type?: string }) => {
        if (m?.type === 'listening') {
          clearTimeout(t);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`server exited with ${code} during start:\n${logs}`));
      });
    });
  };
  await launch();

  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  const cp: ControlPlane = {
    kind,
    baseUrl,
    port,
    env,
    db,
    get proc() {
      return proc;
    },
    logs: () => logs,
    stop,
    async cleanup() {
      await stop();
      await db?.cleanup();
      await rm(dataDir, { recursive: true, force: true });
    },
    async restart() {
      await stop();
      await launch();
    },
  };
  return cp;
}
