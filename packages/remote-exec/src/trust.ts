import { lstatSync, readdirSync, realpathSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { MapEntry } from './procfs';

/**
 * May the engine run this interpreter with its own privileges? The sys backend's tracer is the target's own
 * interpreter, started by the engine (root). It runs with `-I -S` (no environment, no user site, no `site`, so
 * no `.pth` files), but it still executes its binary, its shared libraries and the standard library it finds
 * next to itself: each must be changeable only by root (or the engine's own uid) — owned by one of them, not
 * writable by group or others, and likewise every directory on its path (a sticky directory such as /tmp is
 * fine when what is below it is trusted). Anything else is refused with the first file found.
 */
export interface Untrusted {
  file: string;
  why: string;
}

function trustedUid(uid: number): boolean {
  return uid === 0 || uid === (process.geteuid?.() ?? 0);
}

function problem(path: string, st: Stats, what: 'file' | 'directory'): string | null {
  if (!trustedUid(st.uid)) return `the ${what} is owned by uid ${st.uid}`;
  if ((st.mode & 0o022) !== 0 && !(what === 'directory' && (st.mode & 0o1000) !== 0))
    return `the ${what} is writable by ${st.mode & 0o020 ? 'its group' : 'others'} (mode ${(st.mode & 0o7777).toString(8)})`;
  void path;
  return null;
}

/** Check `path` (resolved) and every directory above it. */
export function checkPath(path: string): Untrusted | null {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return { file: path, why: 'it cannot be resolved' };
  }
  const chain: string[] = [];
  for (let p = real; ; p = dirname(p)) {
    chain.unshift(p);
    if (p === '/') break;
  }
  for (let i = 0; i < chain.length; i++) {
    const p = chain[i]!;
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch (e) {
      return { file: p, why: `it cannot be examined (${(e as Error).message})` };
    }
    const last = i === chain.length - 1;
    const why = problem(p, st, st.isDirectory() ? 'directory' : 'file');
    if (why) return { file: p, why: last ? why : `${why}, on the path of ${real}` };
    // A sticky directory protects only what its trusted owner put there: the next component must be trusted
    // itself (checked in the next round).
  }
  return null;
}

/** Every file and directory below `dir` (symbolic links resolved and checked where they lead). */
export function checkTree(dir: string, limit = 50_000): Untrusted | null {
  const top = checkPath(dir);
  if (top) return top;
  const stack = [realpathSync(dir)];
  let seen = 0;
  while (stack.length) {
    const d = stack.pop()!;
    let names: string[];
    try {
      names = readdirSync(d);
    } catch (e) {
      return { file: d, why: `it cannot be listed (${(e as Error).message})` };
    }
    for (const n of names) {
      if (++seen > limit) return { file: dir, why: `it holds more than ${limit} entries` };
      const p = join(d, n);
      let st: Stats;
      try {
        st = lstatSync(p);
      } catch {
        continue; // removed meanwhile (only its trusted owner could)
      }
      if (st.isSymbolicLink()) {
        let target: string;
        try {
          target = realpathSync(p);
        } catch {
          continue; // dangling: loads nothing
        }
        const bad = checkPath(target);
        if (bad) return { file: p, why: `it links to ${target}, and ${bad.file}: ${bad.why}` };
        continue;
      }
      const why = problem(p, st, st.isDirectory() ? 'directory' : 'file');
      if (why) return { file: p, why };
      if (st.isDirectory()) stack.push(p);
    }
  }
  return null;
}

/** Python extension modules: loaded by `import`, which the tracer's `-S` start-up never does outside the stdlib. */
function extensionModule(path: string): boolean {
  return /\.cpython-\d+[^/]*\.so$|\.abi3\.so$/.test(basename(path));
}

/**
 * Files the tracer would execute: its command (binary, loader), the shared libraries the target has mapped
 * (the same binary resolves the same libraries; extra ones only make the check stricter), and the standard
 * library found next to the binary (`<prefix>/lib/pythonX.Y`, with `lib-dynload` and `__pycache__`).
 */
// Verdicts of "trusted", for a minute: only root (or the engine's uid) can change what was found trusted, and
// walking a standard library costs tens of milliseconds per run. Refusals are never cached.
const TRUST_TTL_MS = 60_000;
const trusted = new Map<string, number>();

export function checkInterpreter(opts: {
  command: string[];
  image: string;
  maps: MapEntry[];
  version: { major: number; minor: number };
}): Untrusted | null {
  const files = new Set<string>();
  for (const c of opts.command) if (c.startsWith('/')) files.add(c);
  files.add(opts.image);
  for (const m of opts.maps)
    if (m.path.startsWith('/') && m.perms.includes('x') && !m.deleted && !extensionModule(m.path))
      files.add(m.path);
  const key = [...files].sort().join('\0') + `\0${opts.version.major}.${opts.version.minor}`;
  const at = trusted.get(key);
  if (at !== undefined && Date.now() - at < TRUST_TTL_MS) return null;
  const verdict = checkFiles(files, opts);
  if (verdict === null) {
    if (trusted.size > 256) trusted.clear();
    trusted.set(key, Date.now());
  }
  return verdict;
}

function checkFiles(
  files: Set<string>,
  opts: { image: string; version: { major: number; minor: number } },
): Untrusted | null {
  for (const f of files) {
    const bad = checkPath(f);
    if (bad) return bad;
  }
  const exeDir = dirname(realpathSync(opts.image));
  for (const cfg of [join(exeDir, 'pyvenv.cfg'), join(dirname(exeDir), 'pyvenv.cfg')]) {
    try {
      lstatSync(cfg);
    } catch {
      continue;
    }
    const bad = checkPath(cfg);
    if (bad) return bad;
  }
  const lib = `python${opts.version.major}.${opts.version.minor}`;
  for (let p = exeDir; p !== '/'; p = dirname(p)) {
    const stdlib = join(p, 'lib', lib);
    try {
      if (!lstatSync(join(stdlib, 'os.py')).isFile()) continue;
    } catch {
      continue;
    }
    return checkTree(stdlib);
  }
  return { file: exeDir, why: `no standard library (lib/${lib}/os.py) was found above it to check` };
}
