/**
 * Start real CPython 3.14 targets for tests: host-style, through the dynamic loader, container-style
 * (own pid + mount namespace, chroot), as an unprivileged user, with remote debugging disabled.
 * Independent of the engine so every workspace's tests can use it.
 *
 * Python comes from env PYREACH_PYTHON (a directly runnable python3.14), else from
 * scripts/provision-python.sh (cached). Container/loader styles need the provisioned root tree:
 * PYREACH_PYTHON_ROOT, else derived from the provisioned interpreter's path.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, '../..');
export const FIXTURES_DIR = join(REPO_ROOT, 'test/fixtures/python');
export const TEST_USER = 'pyreach-test';

let cachedPython: string | null = null;

/** Absolute path of a directly runnable python3.14 (provisions it on first use). */
export function pythonPath(): string {
  if (cachedPython) return cachedPython;
  const fromEnv = process.env.PYREACH_PYTHON;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`PYREACH_PYTHON=${fromEnv} does not exist`);
    cachedPython = fromEnv;
    return fromEnv;
  }
  const out = execFileSync('bash', [join(REPO_ROOT, 'scripts/provision-python.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const last = out.trim().split('\n').pop() ?? '';
  if (!last.startsWith('/') || !existsSync(last))
    throw new Error(`provision-python.sh printed no interpreter path (got ${JSON.stringify(last)})`);
  cachedPython = last;
  return last;
}

/** Root tree of the provisioned Python (usable for chroot). */
export function pythonRoot(): string {
  const fromEnv = process.env.PYREACH_PYTHON_ROOT;
  const root = fromEnv ?? pythonPath().replace(/\/usr\/bin\/[^/]+$/, '');
  if (!existsSync(join(root, 'usr/bin/python3.14')) || !existsSync(join(root, 'lib64')))
    throw new Error(
      `no container-style Python root at ${root}: run scripts/provision-python.sh (or set PYREACH_PYTHON_ROOT)`,
    );
  return root;
}

function worldTraversable(path: string): boolean {
  let p = path;
  while (p !== '/' && p !== '.') {
    try {
      if ((statSync(p).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    p = dirname(p);
  }
  return true;
}

let cachedUserRoot: string | null = null;

/**
 * A copy of the provisioned root that other users can reach (the cache usually sits under /root, mode
 * 0700): hard links where possible, with the host-style interpreter re-patched to the new location.
 */
export function userAccessibleRoot(): string {
  if (cachedUserRoot) return cachedUserRoot;
  const root = pythonRoot();
  if (worldTraversable(root)) return (cachedUserRoot = root);
  const mirror = '/var/tmp/pyreach-python-3.14';
  const script = `
    set -e
    m="$1"; r="$2"
    if [ ! -f "$m/.complete" ] || [ "$(cat "$m/.complete")" != "$r" ]; then
      rm -rf "$m.tmp"; mkdir -p "$m.tmp"
      cp -al "$r/." "$m.tmp/" 2>/dev/null || cp -a "$r/." "$m.tmp/"
      rm -f "$m.tmp/usr/bin/python3.14-host"
      cp "$r/usr/bin/python3.14" "$m.tmp/usr/bin/python3.14-host"
      lib="$m/usr/lib/x86_64-linux-gnu"
      patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$lib" "$m.tmp/usr/bin/python3.14-host"
      chmod 0755 "$m.tmp" "$m.tmp/usr/bin/python3.14-host"
      rm -rf "$m"; mv "$m.tmp" "$m"; echo "$r" > "$m/.complete"
    fi`;
  execFileSync('bash', ['-c', script, 'mirror', mirror, root], { stdio: ['ignore', 'ignore', 'inherit'] });
  return (cachedUserRoot = mirror);
}

export function fixturePath(name: string): string {
  const p = name.startsWith('/') ? name : join(FIXTURES_DIR, name);
  if (!existsSync(p)) throw new Error(`fixture ${p} not found`);
  return p;
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

/** The unprivileged `pyreach-test` system user, created if missing (needs root). */
export function ensureTestUser(): TestUser {
  const look = (): TestUser | null => {
    try {
      const uid = Number(
        execFileSync('id', ['-u', TEST_USER], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        }).trim(),
      );
      const gid = Number(
        execFileSync('id', ['-g', TEST_USER], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        }).trim(),
      );
      return { name: TEST_USER, uid, gid };
    } catch {
      return null;
    }
  };
  const found = look();
  if (found) return found;
  execFileSync(
    'useradd',
    ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', TEST_USER],
    { stdio: 'ignore' },
  );
  const made = look();
  if (!made) throw new Error(`could not create user ${TEST_USER}`);
  return made;
}

export type TargetStyle = 'host' | 'loader' | 'container';

export interface StartOptions {
  style?: TargetStyle;
  args?: string[];
  /** Extra environment (merged over a small clean one). */
  env?: Record<string, string>;
  /** Run as this user (default: the caller). `true` means the `pyreach-test` user. */
  user?: TestUser | true;
  disableRemoteDebug?: boolean;
  /** Line (substring or regex) that says the target is ready; default `READY`. null: do not wait. */
  readyPattern?: string | RegExp | null;
  readyTimeoutMs?: number;
}

export interface PyTarget {
  /** Host pid of the Python process itself (for container style: the child of `unshare`). */
  pid: number;
  style: TargetStyle;
  /** Path of the script inside the target's view. */
  scriptInTarget: string;
  /** Host path of the target's root ('/' unless container style). */
  rootOnHost: string;
  /** The line that matched readyPattern, if any. */
  readyLine: string | null;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line matching `pattern` (searching from `fromOffset`). */
  waitForStdout(pattern: string | RegExp, timeoutMs?: number, fromOffset?: number): Promise<string>;
  /** Resolves when the process (tree) has exited. */
  exited: Promise<void>;
  isRunning(): boolean;
  /** SIGKILL the whole tree (the target, its launcher, everything in its namespace) and remove copied files. */
  kill(): Promise<void>;
}

const BASE_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  PYTHONUNBUFFERED: '1',
  PYTHONDONTWRITEBYTECODE: '1',
};

function matches(line: string, p: string | RegExp): boolean {
  return typeof p === 'string' ? line.includes(p) : p.test(line);
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const live = new Set<PyTarget>();
process.on('exit', () => {
  for (const t of live) void t.kill();
});

/** Start `script` (a fixture name or an absolute path) as a Python 3.14 target. */
export async function startPython(script: string, opts: StartOptions = {}): Promise<PyTarget> {
  const style = opts.style ?? 'host';
  const src = fixturePath(script);
  const user = opts.user === true ? ensureTestUser() : opts.user;
  const env: Record<string, string> = { ...BASE_ENV, ...(opts.env ?? {}) };
  if (opts.disableRemoteDebug) env.PYTHON_DISABLE_REMOTE_DEBUG = '1';

  // Copy the script where the target (possibly another uid, possibly chrooted) can read it.
  let copyDirHost: string;
  let scriptInTarget: string;
  let rootOnHost = '/';
  let argv: string[];
  if (style === 'container') {
    rootOnHost = pythonRoot(); // chroot happens as root, the uid switch after it
    copyDirHost = mkdtempSync(join(rootOnHost, 'tmp', 'fx-'));
    scriptInTarget = `/tmp/${basename(copyDirHost)}/${basename(src)}`;
    const spec = user ? [`--userspec=${user.uid}:${user.gid}`] : [];
    argv = [
      'unshare',
      '--pid',
      '--mount',
      '--fork',
      `--mount-proc=${rootOnHost}/proc`,
      'chroot',
      ...spec,
      rootOnHost,
      '/usr/bin/python3.14',
      scriptInTarget,
    ];
  } else {
    copyDirHost = mkdtempSync(join(tmpdir(), 'pyreach-fx-'));
    scriptInTarget = join(copyDirHost, basename(src));
    if (style === 'loader') {
      const root = user ? userAccessibleRoot() : pythonRoot();
      const lib = join(root, 'usr/lib/x86_64-linux-gnu');
      argv = [
        join(lib, 'ld-linux-x86-64.so.2'),
        '--library-path',
        lib,
        join(root, 'usr/bin/python3.14'),
        scriptInTarget,
      ];
    } else {
      argv = [user ? join(userAccessibleRoot(), 'usr/bin/python3.14-host') : pythonPath(), scriptInTarget];
    }
  }
  chmodSync(copyDirHost, 0o755);
  copyFileSync(src, join(copyDirHost, basename(src)));
  chmodSync(join(copyDirHost, basename(src)), 0o644);
  argv.push(...(opts.args ?? []));

  const spawnUser = user && style !== 'container' ? { uid: user.uid, gid: user.gid } : {};
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), {
    cwd: style === 'container' ? '/' : copyDirHost,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: kill() takes the whole tree
    ...spawnUser,
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    notify();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    notify();
  });
  let exitedFlag = false;
  const exited = new Promise<void>((res) => {
    child.on('exit', () => {
      exitedFlag = true;
      notify();
      res();
    });
    child.on('error', () => {
      exitedFlag = true;
      notify();
      res();
    });
  });

  const waitForStdout = (pattern: string | RegExp, timeoutMs = 20_000, fromOffset = 0): Promise<string> =>
    new Promise((res, rej) => {
      const check = (): boolean => {
        const lines = out.slice(fromOffset).split('\n');
        // the last element may be a partial line
        for (const line of lines.slice(0, -1)) {
          if (matches(line, pattern)) {
            done();
            res(line);
            return true;
          }
        }
        if (exitedFlag) {
          done();
          rej(
            new Error(
              `target exited before printing ${pattern}\nstdout: ${out.slice(-2000)}\nstderr: ${err.slice(-2000)}`,
            ),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        rej(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${pattern}\nstdout: ${out.slice(-2000)}\nstderr: ${err.slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      const w = (): void => void check();
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(w);
      };
      waiters.add(w);
      check();
    });

  const launcherPid = child.pid;
  if (launcherPid === undefined) {
    rmSync(copyDirHost, { recursive: true, force: true });
    throw new Error(`could not start ${argv[0]} (is it reachable for ${user ? user.name : 'this user'}?)`);
  }

  let killed = false;
  const target: PyTarget = {
    pid: launcherPid,
    style,
    scriptInTarget,
    rootOnHost,
    readyLine: null,
    stdout: () => out,
    stderr: () => err,
    waitForStdout,
    exited,
    isRunning: () => !exitedFlag && alive(target.pid),
    async kill() {
      if (!killed) {
        killed = true;
        live.delete(target);
        // The python pid first (in a pid namespace it is pid 1 and ignores SIGTERM), then the group.
        for (const pid of [target.pid, launcherPid]) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        try {
          process.kill(-launcherPid, 'SIGKILL');
        } catch {
          /* group gone */
        }
      }
      if (!exitedFlag) await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      rmSync(copyDirHost, { recursive: true, force: true });
    },
  };
  live.add(target);

  try {
    if (style === 'container') {
      // The target is the child of `unshare`.
      const deadline = Date.now() + 10_000;
      let found: number | undefined;
      while (Date.now() < deadline && !exitedFlag) {
        found = childPids(launcherPid)[0];
        if (found) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      if (!found) throw new Error(`container-style target did not start: ${err}`);
      target.pid = found;
    }
    const ready = opts.readyPattern === undefined ? 'READY' : opts.readyPattern;
    if (ready !== null) target.readyLine = await waitForStdout(ready, opts.readyTimeoutMs ?? 30_000);
  } catch (e) {
    await target.kill();
    throw e;
  }
  return target;
}

/** Start a process that is not Python (for NOT_PYTHON checks). */
export function startNonPython(): { pid: number; kill: () => void } {
  const child = spawn('sleep', ['600'], { stdio: 'ignore', detached: true });
  return {
    pid: child.pid!,
    kill: () => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    },
  };
}

/**
 * A private copy of the container-style root (hard links where possible), for tests that must change files
 * inside a container's root (e.g. plant a FIFO at its /etc/passwd) without touching the shared one. Use it
 * with `withPythonRoot(copy.root, () => startPython(..., { style: 'container' }))`.
 */
export function privateContainerRoot(): { root: string; cleanup(): void } {
  const src = pythonRoot();
  const root = mkdtempSync('/var/tmp/pyreach-ctr-');
  // Everything but /tmp, hard-linked: the shared root's /tmp may hold another test's staging directory at this
  // very moment, and a hard link to its files would be (rightly) seen as tampering by that test's engine.
  const copy = `
    shopt -s dotglob nullglob
    for e in "$1"/*; do
      [ "$(basename "$e")" = tmp ] && continue
      cp -al "$e" "$2/" 2>/dev/null || cp -a "$e" "$2/"
    done
    mkdir -p "$2/tmp" && chmod 1777 "$2/tmp"`;
  execFileSync('bash', ['-c', copy, 'copy', src, root], { stdio: ['ignore', 'ignore', 'inherit'] });
  chmodSync(root, 0o755);
  return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Run `fn` with PYREACH_PYTHON_ROOT pointing at `root` (container-style targets start from it). */
export async function withPythonRoot<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const before = process.env.PYREACH_PYTHON_ROOT;
  process.env.PYREACH_PYTHON_ROOT = root;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.PYREACH_PYTHON_ROOT;
    else process.env.PYREACH_PYTHON_ROOT = before;
  }
}

/**
 * A CPython 3.14 install owned by `user` (as with pyenv, conda, uv or a home-directory build): a full copy
 * of the provisioned root, chowned to the user, its interpreter patched to load the copy's own libraries.
 * `python` runs directly; `sitePackages` is a directory its `site` reads .pth files from.
 */
export function userOwnedPython(user: TestUser): {
  root: string;
  python: string;
  sitePackages: string;
  cleanup(): void;
} {
  const src = userAccessibleRoot();
  const root = mkdtempSync('/var/tmp/pyreach-userpy-');
  const lib = join(root, 'usr/lib/x86_64-linux-gnu');
  const python = join(root, 'usr/bin/python3.14-host');
  const sitePackages = join(root, 'usr/lib/python3/dist-packages');
  const script = `
    set -e
    cp -a "$1/." "$2/"
    patchelf --set-interpreter "$3/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$3" "$4"
    mkdir -p "$5"
    chown -R "$6:$7" "$2"
    chmod 0755 "$2"`;
  execFileSync(
    'bash',
    ['-c', script, 'userpy', src, root, lib, python, sitePackages, String(user.uid), String(user.gid)],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return { root, python, sitePackages, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export interface ViewFrame {
  function: string;
  file: string;
  line: number;
}

/** Host path of a file the target wrote beside its script. */
export function besideScript(t: PyTarget, name: string): string {
  return (t.rootOnHost === '/' ? '' : t.rootOnHost) + `${dirname(t.scriptInTarget)}/${name}`;
}

/** stacks_known.py once only its three parked threads are left, with the interpreter's own view of them. */
export async function knownStacks(opts: StartOptions = {}) {
  const t = await startPython('stacks_known.py', opts);
  for (let i = 0; i < 500 && readdirSync(`/proc/${t.pid}/task`).length !== 3; i++)
    await new Promise((r) => setTimeout(r, 10));
  const view = JSON.parse(readFileSync(besideScript(t, 'view.json'), 'utf8')) as {
    threads: { tid: number; name: string; main: boolean; frames: ViewFrame[] }[];
  };
  return { t, view };
}
