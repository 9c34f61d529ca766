import { closeSync, readFileSync, readdirSync } from 'node:fs';
import type { PythonProcess } from '@pyreach/protocol/inventory';
// [container identity] structured identity of each process's container (container.ts).
import { containerIdentityFor } from './container';
import { O, fsatLoaded, loadFsat, openTrusted, readInRoot } from './fsat';
import { formatVersion } from './offsets';
import {
  listPids,
  parsePasswd,
  procPath,
  readCmdline,
  readLinkOrNull,
  readMaps,
  readNs,
  readStat,
  readStatus,
  type MapEntry,
} from './procfs';
import { listKernelThreads } from './inspect/threads';
import {
  InspectError,
  locateRuntime,
  openMem,
  readMainInterpreter,
  remoteDebugChoice,
  runtimeCandidates,
} from './runtime';

export interface DiscoverOptions {
  /** Root of the proc filesystem to scan (default `/proc`). */
  procRoot?: string;
  /** Only inspect these pids (default: every process). */
  pids?: number[];
}

interface HostIdentity {
  mnt: string | null;
  pid: string | null;
}

/** Namespaces of the host: pid 1's when readable, else the engine's own. */
function hostIdentity(procRoot: string): HostIdentity {
  const mnt = readNs(procRoot, 1, 'mnt') ?? readNs(procRoot, 'self', 'mnt');
  const pid = readNs(procRoot, 1, 'pid') ?? readNs(procRoot, 'self', 'pid');
  return { mnt, pid };
}

function stripDeleted(p: string | null): string | null {
  return p?.endsWith(' (deleted)') ? p.slice(0, -' (deleted)'.length) : p;
}

const passwdCache = new Map<string, Map<number, string>>();
const PASSWD_CAP = 4 * 1024 * 1024;

/**
 * The container's /etc/passwd, read inside its root without following any link (a link there resolves on the
 * host through /proc/PID/root) and without blocking (O_NONBLOCK, regular files only, size-capped): a FIFO or a
 * device planted there is skipped, never waited on. Null when absent, unsafe, or the FFI is not loaded.
 */
function containerPasswd(procRoot: string, pid: number): Buffer | null {
  if (!fsatLoaded()) return null;
  let rootFd: number;
  try {
    rootFd = openTrusted(procPath(procRoot, pid, 'root'), O.RDONLY | O.DIRECTORY);
  } catch {
    return null;
  }
  try {
    return readInRoot(rootFd, '/etc/passwd', PASSWD_CAP);
  } catch {
    return null;
  } finally {
    closeSync(rootFd);
  }
}

function userName(procRoot: string, pid: number, uid: number, inContainer: boolean): string | null {
  if (inContainer) {
    const raw = containerPasswd(procRoot, pid);
    const name = raw ? parsePasswd(raw.toString('utf8')).get(uid) : undefined;
    if (name) return name;
  }
  let table = passwdCache.get('/etc/passwd');
  if (!table) {
    try {
      table = parsePasswd(readFileSync('/etc/passwd', 'utf8'));
      passwdCache.set('/etc/passwd', table);
    } catch {
      return null;
    }
  }
  return table.get(uid) ?? null;
}

/**
 * A short container label: the runtime's container id (parsed by container.ts — not any 64 hex digits
 * anywhere in the cgroup file, which a process can plant in a nested cgroup name), else the pid namespace.
 */
function containerId(
  pidNs: string | null,
  mntNs: string | null,
  parsedId: string | null | undefined,
): string {
  if (parsedId) return parsedId.slice(0, 12);
  return (pidNs ?? mntNs ?? 'unknown').replace(/[^0-9a-z:]/gi, '');
}

/** Facts about one pid that need no Python knowledge. */
export function processFacts(procRoot: string, pid: number, host: HostIdentity = hostIdentity(procRoot)) {
  const stat = readStat(procRoot, pid);
  const status = readStatus(procRoot, pid);
  if (!stat || !status) return null;
  const mntNs = readNs(procRoot, pid, 'mnt');
  const pidNs = readNs(procRoot, pid, 'pid');
  const inContainer =
    (mntNs !== null && host.mnt !== null && mntNs !== host.mnt) ||
    (pidNs !== null && host.pid !== null && pidNs !== host.pid);
  const nsPid = status.nsPids[status.nsPids.length - 1] ?? pid;
  return { stat, status, mntNs, pidNs, inContainer, nsPid };
}

/**
 * Inspect one pid. Returns null for processes that are not Python (or vanished); a PythonProcess with
 * `inspectError` when it is Python but its state could not be read.
 */
export function inspectProcess(
  procRoot: string,
  pid: number,
  host: HostIdentity = hostIdentity(procRoot),
): PythonProcess | null {
  const facts = processFacts(procRoot, pid, host);
  if (!facts) return null;
  let maps: MapEntry[];
  try {
    maps = readMaps(procRoot, pid);
  } catch {
    return null; // kernel thread, vanished, or not ours to read
  }
  const exe = stripDeleted(readLinkOrNull(procPath(procRoot, pid, 'exe')));
  if (!exe) return null;
  const candidates = runtimeCandidates(procRoot, pid, maps);
  if (candidates.length === 0) return null;
  // [container identity] read once per inspected Python process.
  const identity = containerIdentityFor(procRoot, pid, facts.inContainer);
  const base: PythonProcess = {
    pid,
    nsPid: facts.nsPid,
    startTime: facts.stat.startTime,
    uid: facts.status.uid,
    user: userName(procRoot, pid, facts.status.uid, facts.inContainer),
    exe,
    cmdline: readCmdline(procRoot, pid).slice(0, 256),
    cwd: readLinkOrNull(procPath(procRoot, pid, 'cwd')),
    pythonVersion: null,
    freeThreaded: null,
    remoteDebugEnabled: null,
    inContainer: facts.inContainer,
    container: facts.inContainer ? containerId(facts.pidNs, facts.mntNs, identity?.containerId) : null,
    ...(identity ? { containerIdentity: identity } : {}),
    threads: [],
    inspectError: null,
  };
  let mem;
  try {
    mem = openMem(procRoot, pid, false);
  } catch (e) {
    if (e instanceof InspectError && e.kind === 'gone') return null;
    return { ...base, inspectError: (e as Error).message.slice(0, 1024) };
  }
  try {
    const loc = locateRuntime(procRoot, pid, mem, maps, candidates);
    base.pythonVersion = formatVersion(loc.offsets.version);
    base.freeThreaded = loc.offsets.freeThreaded;
    try {
      const view = readMainInterpreter(mem, loc, facts.nsPid);
      base.remoteDebugEnabled = remoteDebugChoice(view);
      // Names from /proc (as threadFacts): CPython's thread names live in Python objects no debug offset
      // describes, but 3.14's threading copies each into the thread's comm.
      const kernel = listKernelThreads(procRoot, pid);
      base.threads = view.threads
        .filter((t) => t.tid > 0)
        .map((t) => ({
          tid: t.tid,
          main: view.mainTstate === t.tstate,
          name: kernel.get(t.tid)?.comm ?? null,
        }))
        .reverse(); // thread list is newest first; report oldest (usually main) first
    } catch (e) {
      base.inspectError = (e as Error).message.slice(0, 1024);
    }
    return base;
  } catch (e) {
    if (e instanceof InspectError && e.kind === 'not_python') return null;
    if (e instanceof InspectError && e.kind === 'unsupported' && e.version) {
      base.pythonVersion = formatVersion(e.version);
    }
    return { ...base, inspectError: (e as Error).message.slice(0, 1024) };
  } finally {
    mem.close();
  }
}

/** Every Python process visible in `procRoot`, ordered by pid. Never throws for individual processes. */
export async function discover(opts: DiscoverOptions = {}): Promise<PythonProcess[]> {
  const procRoot = opts.procRoot ?? '/proc';
  try {
    await loadFsat();
  } catch {
    /* without the FFI, container user names are not read (never unsafely) */
  }
  const host = hostIdentity(procRoot);
  const pids = opts.pids ?? listPids(procRoot, (p) => readdirSync(p));
  const out: PythonProcess[] = [];
  const self = process.pid;
  for (let i = 0; i < pids.length; i++) {
    const pid = pids[i]!;
    if (pid === self && procRoot === '/proc') continue;
    const p = inspectProcess(procRoot, pid, host);
    if (p) out.push(p);
    // Yield now and then so a large scan does not starve the event loop (agent heartbeats).
    if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  return out;
}

export { hostIdentity };
