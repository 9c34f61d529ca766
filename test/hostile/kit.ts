/**
 * The hostile-target kit: the pieces a test needs to play the target's user against Pyreach.
 *
 * - HOSTILE_USER: uid/gid 65534 (nobody/nogroup), the target's user;
 * - makeCanaries(): root-owned files outside any staging directory, with a snapshot of content, owner, mode
 *   and times, and a check that nothing read, wrote or chowned them;
 * - startAttacker(): a process of the target's uid that plants links, FIFOs and hard links in every staging
 *   directory that appears (polling or inotify-driven), swaps files and directories, grows outputs, and logs
 *   each attempt (test/hostile/attacker.py);
 * - hostileBase(): a staging base directory the target's user owns (not sticky), where it can rename and
 *   replace whatever the engine creates — the worst case of a container whose /tmp belongs to its user.
 *
 * Independent of the engine, so the same attacks can be driven through the CLI, the agent and the control
 * plane.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { userAccessibleRoot, type TestUser } from '../support/python';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ATTACKER_SCRIPT = join(HERE, 'attacker.py');

/** The target's user in every hostile test: nobody/nogroup. */
export const HOSTILE_USER: TestUser = { name: 'nobody', uid: 65534, gid: 65534 };

export interface CanaryState {
  path: string;
  content: string;
  uid: number;
  gid: number;
  mode: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface Canaries {
  /** Directory holding the canaries (root-owned, 0755, so the attacker can name but not change them). */
  dir: string;
  /** A root-only secret (0600): must never be read into a result, written, truncated or chowned. */
  secret: string;
  /** A root-owned, world-readable file. */
  file: string;
  /** The state now of every canary. */
  snapshot(): CanaryState[];
  /** Throws (with the difference) unless every canary is exactly as it was made. */
  assertIntact(): void;
  /** Text that must never appear in any output or result. */
  secretText: string;
  cleanup(): void;
}

function stateOf(path: string): CanaryState {
  const st = lstatSync(path);
  return {
    path,
    content: readFileSync(path, 'utf8'),
    uid: st.uid,
    gid: st.gid,
    mode: st.mode,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs,
  };
}

export function makeCanaries(): Canaries {
  const dir = mkdtempSync('/var/tmp/pyreach-canary-');
  chmodSync(dir, 0o755);
  const secretText = `PYREACH-CANARY-${randomBytes(12).toString('hex')}`;
  const secret = join(dir, 'agent.key');
  const file = join(dir, 'config');
  writeFileSync(secret, secretText + '\n', { mode: 0o600 });
  writeFileSync(file, `public ${secretText.toLowerCase()}\n`, { mode: 0o644 });
  const made = [secret, file].map(stateOf);
  return {
    dir,
    secret,
    file,
    secretText,
    snapshot: () => [secret, file].map(stateOf),
    assertIntact() {
      const now = [secret, file].map(stateOf);
      for (let i = 0; i < made.length; i++) {
        const a = made[i]!;
        const b = now[i]!;
        for (const k of ['content', 'uid', 'gid', 'mode', 'mtimeMs', 'ctimeMs'] as const)
          if (a[k] !== b[k])
            throw new Error(
              `canary ${a.path} changed: ${k} ${JSON.stringify(a[k])} -> ${JSON.stringify(b[k])}`,
            );
      }
      const extra = existsSync(dir) ? [] : ['canary directory vanished'];
      if (extra.length) throw new Error(extra.join('; '));
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Canaries over a file that already exists and must stay secret (e.g. the agent's own `agent.key`): the
 * attacker links to it, and nothing of it may come back or change. `secretText` is its longest line.
 */
export function existingCanary(path: string): Canaries {
  const made = stateOf(path);
  const secretText = made.content
    .split('\n')
    .reduce((a, b) => (b.length > a.length ? b : a), '')
    .trim();
  if (secretText.length < 16) throw new Error(`${path} has no line long enough to recognise a leak`);
  return {
    dir: dirname(path),
    secret: path,
    file: path,
    secretText,
    snapshot: () => [stateOf(path)],
    assertIntact() {
      const now = stateOf(path);
      for (const k of ['content', 'uid', 'gid', 'mode', 'mtimeMs', 'ctimeMs'] as const)
        if (made[k] !== now[k])
          throw new Error(`${path} changed: ${k} ${JSON.stringify(made[k])} -> ${JSON.stringify(now[k])}`);
    },
    cleanup: () => undefined,
  };
}

export type Attack = 'symlink' | 'fifo' | 'hardlink' | 'swap-dir' | 'swap-out' | 'link-out' | 'grow-out';

export interface AttemptRecord {
  dir: string;
  attack: Attack;
  name: string;
  ok: boolean;
  error: string | null;
}

export interface AttackerOptions {
  /** Base directories to watch for staging directories (host paths, e.g. `/proc/PID/root/tmp` or `/tmp`). */
  bases: string[];
  mode: 'poll' | 'inotify';
  attacks: Attack[];
  canaries: Canaries;
  /** File names to plant (default: every name the engine ever used there). */
  names?: string[];
  growBytes?: number;
  user?: TestUser;
}

export interface Attacker {
  pid: number;
  /** Every attempt so far. */
  attempts(): AttemptRecord[];
  /** Attempts on one staging directory (matched by its name). */
  attemptsOn(dirName: string): AttemptRecord[];
  /** Waits until the attacker has tried at least `n` things on directories matching `dirName`. */
  waitForAttempts(n: number, timeoutMs?: number, dirName?: string): Promise<AttemptRecord[]>;
  stderr(): string;
  kill(): Promise<void>;
}

/** Start an attacker process of the target's uid (65534 by default) using a Python it can run. */
export async function startAttacker(opts: AttackerOptions): Promise<Attacker> {
  const user = opts.user ?? HOSTILE_USER;
  const work = mkdtempSync('/tmp/pyreach-attacker-');
  chmodSync(work, 0o755);
  const log = join(work, 'attempts.jsonl');
  writeFileSync(log, '');
  chownSync(log, user.uid, user.gid);
  const script = join(work, 'attacker.py');
  writeFileSync(script, readFileSync(ATTACKER_SCRIPT));
  chmodSync(script, 0o644);
  const cfg = {
    bases: opts.bases,
    mode: opts.mode,
    attacks: opts.attacks,
    canary: opts.canaries.secret,
    canaryDir: opts.canaries.dir,
    log,
    names: opts.names,
    growBytes: opts.growBytes,
  };
  const py = join(userAccessibleRoot(), 'usr/bin/python3.14-host');
  const child: ChildProcess = spawn(py, ['-I', script, JSON.stringify(cfg)], {
    uid: user.uid,
    gid: user.gid,
    cwd: '/',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
    detached: true,
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`attacker did not start: ${err}`)), 15_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (d.includes('ready')) {
        clearTimeout(timer);
        res();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`attacker exited (${code}): ${err}`));
    });
  });
  const attempts = (): AttemptRecord[] =>
    readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AttemptRecord);
  return {
    pid: child.pid!,
    attempts,
    attemptsOn: (name) => attempts().filter((a) => a.dir.includes(name)),
    async waitForAttempts(n, timeoutMs = 5000, dirName) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const got = dirName ? attempts().filter((a) => a.dir.includes(dirName)) : attempts();
        if (got.length >= n || Date.now() > until) return got;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stderr: () => err,
    async kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      if (child.exitCode === null && child.signalCode === null)
        await new Promise((r) => {
          child.once('exit', r);
          setTimeout(r, 3000);
        });
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * A staging base the target's user owns (mode 0755, not sticky): inside it, the user can rename, remove and
 * replace anything, including a root-owned staging directory. Returns its host path.
 */
export function hostileBase(user: TestUser = HOSTILE_USER): { path: string; cleanup(): void } {
  const path = mkdtempSync('/tmp/pyreach-hostile-');
  chmodSync(path, 0o755);
  chownSync(path, user.uid, user.gid);
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A private stand-in for /tmp: root-owned, mode 1777 (sticky, world-writable). Tests stage there so that an
 * attacker watching it attacks only this test's runs.
 */
export function stickyBase(): { path: string; cleanup(): void } {
  const path = mkdtempSync('/tmp/pyreach-sticky-');
  chmodSync(path, 0o1777);
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A directory the target's user may write (heartbeat files, records of planted code). */
export function userDir(user: TestUser = HOSTILE_USER): { path: string; cleanup(): void } {
  const path = mkdtempSync('/tmp/pyreach-userdir-');
  chmodSync(path, 0o755);
  chownSync(path, user.uid, user.gid);
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** Make `path`'s parent chain exist for a test (root-owned, 0755). */
export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o755 });
}

/** The part of a run's outcome the judgement needs (an ExecResult, or what the agent/control plane recorded). */
export interface JudgedOutcome {
  status: string;
  errorCode?: string;
  message?: string;
}

/**
 * The verdict on one run the attacker went at: the canaries are intact, no canary text appears anywhere in what
 * came back (`everything`: the result, events, API answers — whatever the caller collected), and the run ended
 * `failed`/`STAGING_TAMPERED` exactly when some attempt landed (`landed` non-empty), else as `expectedStatus`.
 */
export function assertHostileOutcome(
  r: JudgedOutcome,
  landed: AttemptRecord[],
  canaries: Canaries,
  opts: { everything?: unknown; expectedStatus?: string } = {},
): void {
  canaries.assertIntact();
  const all = JSON.stringify(opts.everything ?? r);
  assert.ok(!all.includes(canaries.secretText), `the secret leaked: ${all.slice(0, 500)}`);
  assert.ok(!all.includes(canaries.secretText.toLowerCase()), 'the public canary leaked');
  if (landed.length > 0) {
    assert.equal(
      r.status,
      'failed',
      `tampering landed (${JSON.stringify(landed)}), got ${all.slice(0, 800)}`,
    );
    assert.equal(r.errorCode, 'STAGING_TAMPERED', all.slice(0, 800));
    assert.match(r.message ?? '', /tamper|link|FIFO|owner|replaced|moved|grew|not a regular/i);
  } else {
    assert.equal(r.status, opts.expectedStatus ?? 'succeeded', `nothing landed: ${all.slice(0, 800)}`);
  }
}
