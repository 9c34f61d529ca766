import { closeSync, constants, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { ElfError, readElfRuntimeInfo, runtimeAddress, type ElfRuntimeInfo } from './elf';
import { ProcMem } from './memory';
import {
  COOKIE,
  HEADER_SIZE,
  checkHeader,
  parseDebugOffsets,
  type DebugOffsets,
  type PyVersion,
} from './offsets';
import { candidateImages, procPath, readLinkOrNull, readMaps, type MapEntry } from './procfs';

/** Locating `_PyRuntime` in a live process and walking its interpreter and thread states. */

export class InspectError extends Error {
  constructor(
    readonly kind: 'not_python' | 'unsupported' | 'permission' | 'gone' | 'bad_state',
    message: string,
    readonly version?: PyVersion,
  ) {
    super(message);
  }
}

export interface RuntimeLocation {
  address: bigint;
  image: string;
  via: ElfRuntimeInfo['via'] | 'cookie_scan';
  offsets: DebugOffsets;
}

// Keyed by device, inode and path: the same binary in 200 processes is parsed once.
const elfCache = new Map<string, ElfRuntimeInfo | null>();

function openImage(procRoot: string, pid: number, m: MapEntry): ElfRuntimeInfo | null | undefined {
  const key = `${m.dev}:${m.inode}:${m.path}`;
  if (elfCache.has(key)) return elfCache.get(key);
  // Through the target's root first (containers, private mounts); then the path as the kernel printed it
  // (chrooted targets: maps shows host paths). Accept a file only if its inode is the mapped one.
  for (const path of [procPath(procRoot, pid, 'root') + m.path, m.path]) {
    // The target's user may have put anything at that path since it was mapped (a FIFO, a link to a device):
    // open without blocking, then accept only the mapped regular file itself (same inode) from that descriptor.
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch {
      continue;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || String(st.ino) !== m.inode) continue;
      const info = readElfRuntimeInfo((pos, len) => {
        const buf = Buffer.alloc(len);
        const got = readSync(fd, buf, 0, len, pos);
        return buf.subarray(0, got);
      });
      if (elfCache.size > 4096) elfCache.clear();
      elfCache.set(key, info);
      return info;
    } catch (e) {
      if (e instanceof ElfError) {
        elfCache.set(key, null);
        return null;
      }
    } finally {
      closeSync(fd);
    }
  }
  return undefined; // unreadable on disk: caller scans memory
}

function isPermission(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'EACCES' || code === 'EPERM';
}

function validateAt(
  mem: ProcMem,
  addr: bigint,
): { ok: true; offsets: DebugOffsets } | { ok: false; unsupported?: InspectError } {
  let header: Buffer;
  try {
    header = mem.read(addr, HEADER_SIZE);
  } catch {
    return { ok: false };
  }
  const check = checkHeader(header);
  if (!check.ok) {
    if (check.reason === 'unsupported')
      return { ok: false, unsupported: new InspectError('unsupported', check.message, check.version) };
    return { ok: false };
  }
  const block = mem.read(addr, check.layout.size);
  const offsets = parseDebugOffsets(block, check);
  return { ok: true, offsets };
}

/** Scan the writable mappings of one file for the cookie (binaries deleted or replaced on disk). */
function scanForCookie(
  mem: ProcMem,
  maps: MapEntry[],
  m: MapEntry,
): { addr: bigint; offsets: DebugOffsets } | InspectError | null {
  let unsupported: InspectError | null = null;
  for (const seg of maps) {
    if (seg.inode !== m.inode || seg.dev !== m.dev || !seg.perms.startsWith('rw')) continue;
    const len = Number(seg.end - seg.start);
    if (len > 256 * 1024 * 1024) continue;
    let data: Buffer;
    try {
      data = mem.read(seg.start, len);
    } catch {
      continue;
    }
    for (let at = data.indexOf(COOKIE); at >= 0; at = data.indexOf(COOKIE, at + 1)) {
      const addr = seg.start + BigInt(at);
      const v = validateAt(mem, addr);
      if (v.ok) {
        // A stray "xdebugpy" in data would not carry a plausible interpreter pointer.
        const head = safeU64(mem, addr + v.offsets.interpretersHead);
        if (head !== null && head !== 0n && v.offsets.version.major === 3)
          return { addr, offsets: v.offsets };
      } else if (v.unsupported) unsupported = v.unsupported;
    }
  }
  return unsupported;
}

function safeU64(mem: ProcMem, addr: bigint): bigint | null {
  try {
    return mem.u64(addr);
  } catch {
    return null;
  }
}

export interface RuntimeCandidate {
  map: MapEntry;
  /** ELF facts, or undefined when the file cannot be read on disk (deleted/replaced: scan memory). */
  info: ElfRuntimeInfo | undefined;
}

/** Mapped images that may hold `_PyRuntime`, without touching the target's memory. */
export function runtimeCandidates(procRoot: string, pid: number, maps: MapEntry[]): RuntimeCandidate[] {
  const exe = readLinkOrNull(procPath(procRoot, pid, 'exe'));
  const exePath = exe?.endsWith(' (deleted)') ? exe.slice(0, -' (deleted)'.length) : exe;
  const out: RuntimeCandidate[] = [];
  for (const m of candidateImages(maps, exePath)) {
    const info = m.deleted ? undefined : openImage(procRoot, pid, m);
    if (info === null) continue; // readable ELF without _PyRuntime (extension module, plain program)
    out.push({ map: m, info });
  }
  return out;
}

/**
 * Find and validate `_PyRuntime`. Throws InspectError('not_python') when no mapping carries one,
 * ('unsupported') for a Python whose offsets layout we do not know.
 */
export function locateRuntime(
  procRoot: string,
  pid: number,
  mem: ProcMem,
  maps?: MapEntry[],
  candidates?: RuntimeCandidate[],
): RuntimeLocation {
  const allMaps = maps ?? readMaps(procRoot, pid);
  let unsupported: InspectError | null = null;
  // A copy of libpython that was dlopen'ed but never initialised also carries the static cookie: prefer a
  // runtime with a live interpreter, keep the other only as a last resort.
  let idle: RuntimeLocation | null = null;
  for (const { map: m, info } of candidates ?? runtimeCandidates(procRoot, pid, allMaps)) {
    if (info) {
      const addr = runtimeAddress(info, m.start);
      const v = validateAt(mem, addr);
      if (v.ok) {
        const found: RuntimeLocation = { address: addr, image: m.path, via: info.via, offsets: v.offsets };
        if (safeU64(mem, addr + v.offsets.interpretersHead)) return found;
        idle ??= found;
        continue;
      }
      if (v.unsupported) unsupported = v.unsupported;
      else if (!unsupported)
        // _PyRuntime exists but carries no debug-offsets cookie: a CPython older than 3.13.
        unsupported = new InspectError(
          'unsupported',
          `${m.path} has _PyRuntime but no _Py_DebugOffsets cookie: CPython older than 3.13 (remote exec needs 3.14+)`,
        );
      continue;
    }
    const hit = scanForCookie(mem, allMaps, m);
    if (hit instanceof InspectError) unsupported = hit;
    else if (hit) return { address: hit.addr, image: m.path, via: 'cookie_scan', offsets: hit.offsets };
  }
  if (idle) return idle;
  if (unsupported) throw unsupported;
  throw new InspectError('not_python', `process ${pid} has no CPython runtime (_PyRuntime) mapped`);
}

export interface ThreadEntry {
  tstate: bigint;
  tid: number;
}

export interface InterpreterView {
  interp: bigint;
  remoteDebugEnabled: boolean;
  threadsMain: bigint;
  threads: ThreadEntry[];
  /** Thread state of the main thread: `threads_main`, else the thread whose native id is the process's own pid. */
  mainTstate: bigint | null;
  finalizing: boolean;
}

/** Walk to the main interpreter (id 0) and list its threads. */
export function readMainInterpreter(mem: ProcMem, loc: RuntimeLocation, nsPid: number): InterpreterView {
  const o = loc.offsets;
  let interp = mem.u64(loc.address + o.interpretersHead);
  if (interp === 0n)
    throw new InspectError(
      'bad_state',
      'no running interpreter in the target (still starting or already finalised)',
    );
  for (let hops = 0; interp !== 0n && hops < 1024; hops++) {
    if (mem.i64(interp + o.interpId) === 0n) break;
    interp = mem.u64(interp + o.interpNext);
  }
  if (interp === 0n)
    throw new InspectError('bad_state', 'main interpreter not found in the interpreter list');
  const enabled = mem.i32(interp + o.remoteDebuggingEnabled) === 1;
  const threadsMain = mem.u64(interp + o.threadsMain);
  const threads: ThreadEntry[] = [];
  let ts = mem.u64(interp + o.threadsHead);
  const seen = new Set<bigint>();
  while (ts !== 0n && !seen.has(ts) && threads.length < 4096) {
    seen.add(ts);
    threads.push({ tstate: ts, tid: Number(mem.u64(ts + o.tstateNativeThreadId)) });
    ts = mem.u64(ts + o.tstateNext);
  }
  let mainTstate: bigint | null = threadsMain !== 0n ? threadsMain : null;
  if (mainTstate === null) mainTstate = threads.find((t) => t.tid === nsPid)?.tstate ?? null;
  const finalizing = mem.u64(loc.address + o.finalizing) !== 0n;
  return { interp, remoteDebugEnabled: enabled, threadsMain, threads, mainTstate, finalizing };
}

/**
 * What the target chose about remote debugging, as far as its memory can tell: null while the interpreter is
 * still starting. CPython links a new interpreter into the runtime's list before it copies its config into it,
 * and creates its first thread state only after that copy; until then `remote_debug` reads 0 whatever the
 * process asked for — a "disabled" that, cached by an inventory scan, would refuse the process for good.
 */
export function remoteDebugChoice(
  view: Pick<InterpreterView, 'remoteDebugEnabled' | 'threads'>,
): boolean | null {
  return view.threads.length > 0 ? view.remoteDebugEnabled : null;
}

export function openMem(procRoot: string, pid: number, writable: boolean): ProcMem {
  try {
    return ProcMem.open(procPath(procRoot, pid, 'mem'), writable);
  } catch (e) {
    if (isPermission(e))
      throw new InspectError('permission', permissionMessage(pid, (e as NodeJS.ErrnoException).code!));
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH')
      throw new InspectError('gone', `process ${pid} no longer exists`);
    throw e;
  }
}

export function readPtraceScope(): number | null {
  try {
    return Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim());
  } catch {
    return null;
  }
}

export function permissionMessage(pid: number, code: string): string {
  const scope = readPtraceScope();
  const uid = process.getuid?.() ?? -1;
  const yama =
    scope === null
      ? 'Yama is not active on this kernel.'
      : scope === 0
        ? 'Yama ptrace_scope is 0 (classic ptrace rules).'
        : scope === 3
          ? 'Yama ptrace_scope is 3: attaching is disabled for everyone, root included, until reboot (set kernel.yama.ptrace_scope in sysctl.conf to 0-2 and reboot).'
          : `Yama ptrace_scope is ${scope}: ${scope === 1 ? 'only ancestors of the target may attach' : 'only CAP_SYS_PTRACE holders may attach'} without CAP_SYS_PTRACE; in a trusted environment lower it with "sysctl kernel.yama.ptrace_scope=0" (or echo 0 > /proc/sys/kernel/yama/ptrace_scope).`;
  return (
    `permission denied (${code}) opening the memory of process ${pid} as uid ${uid}: the engine needs ptrace-attach rights over the target. ` +
    `Run it as root or grant CAP_SYS_PTRACE (e.g. "setcap cap_sys_ptrace+ep" on the binary, AmbientCapabilities=CAP_SYS_PTRACE in systemd, ` +
    `or --cap-add=SYS_PTRACE for a container), or run it as the target's own user. ${yama}`
  );
}
