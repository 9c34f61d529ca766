import type { InspectIssue } from '@pyreach/protocol/inspect';
import type { ProcMem } from '../memory';
import { formatVersion } from '../offsets';
import { readMaps, readStat, readStatus, type MapEntry } from '../procfs';
import { InspectError, locateRuntime, openMem, runtimeCandidates, type RuntimeLocation } from '../runtime';
import { FrameReader, issueOf, type FrameLimits } from './frames';
import { LAYOUT_BLOCK_SIZE, inspectionSupported, parseInspectOffsets, type InspectOffsets } from './layout';
import { InspectFault, TargetMemory, imageKey, isFatal, readableRegions } from './memory';
import { ObjectReader } from './objects';

/**
 * One read-only look at a process: its memory opened read-only, `_PyRuntime` located, the inspection offsets
 * parsed, and every interpreter with its thread states listed — with the bounds of one report. Shared by
 * stacks and tasks. Nothing here writes to the target or stops it.
 */

export interface InspectOptions {
  /** Host pid. */
  pid: number;
  /** Root of the proc filesystem (default `/proc`). */
  procRoot?: string;
  /** Frames kept per thread or task, innermost first (default 512, at most 4096). */
  maxFrames?: number;
  /** Thread states read per interpreter (default 1024, at most 4096). */
  maxThreads?: number;
  /** Bytes the whole report may read from the target (default 64 MiB). */
  maxBytes?: number;
  /** Time budget of the whole report (default 5 s). */
  timeoutMs?: number;
  /** Walks of a chain that fails, because a running target changes it under the reader (default 3). */
  attempts?: number;
  /** Characters kept of a function name (default 1024) and of a file name (default 4096). */
  maxNameChars?: number;
  maxFileChars?: number;
  /** Largest line table read (default 256 KiB): a frame of a code object with a larger one has no line. */
  maxLineTableBytes?: number;
}

export const INSPECT_DEFAULTS = {
  maxFrames: 512,
  maxThreads: 1024,
  maxBytes: 64 * 1024 * 1024,
  timeoutMs: 5000,
  attempts: 3,
  maxNameChars: 1024,
  maxFileChars: 4096,
  maxLineTableBytes: 256 * 1024,
} as const;

const clampInt = (v: number | undefined, def: number, min: number, max: number): number =>
  v === undefined || !Number.isFinite(v) ? def : Math.min(max, Math.max(min, Math.floor(v)));

export interface ThreadStateRef {
  tstate: bigint;
  /** native_thread_id: the target's own namespace. */
  tid: number;
}

export interface InterpreterRef {
  addr: bigint;
  id: number;
  remoteDebugEnabled: boolean | null;
  /** Thread states, oldest first (the list itself is newest first). */
  threads: ThreadStateRef[];
  mainTstate: bigint | null;
  /** The thread state holding this interpreter's GIL now (GIL builds). */
  gilHolder: bigint | null;
  error: InspectIssue | null;
}

export interface Session {
  pid: number;
  nsPid: number | null;
  procRoot: string;
  version: string;
  loc: RuntimeLocation;
  maps: MapEntry[];
  o: InspectOffsets;
  mem: TargetMemory;
  objects: ObjectReader;
  frames: FrameReader;
  /** dev:inode of the images the reader may read besides anonymous memory. */
  images: Set<string>;
  limits: Required<Omit<InspectOptions, 'pid' | 'procRoot'>>;
  close(): void;
}

export type SessionResult =
  | { ok: true; session: Session }
  | { ok: false; issue: InspectIssue; nsPid: number | null; version: string | null };

function faultFromInspectError(e: InspectError): InspectIssue {
  const code =
    e.kind === 'permission'
      ? 'PERMISSION_DENIED'
      : e.kind === 'gone'
        ? 'TARGET_GONE'
        : e.kind === 'not_python'
          ? 'NOT_PYTHON'
          : e.kind === 'unsupported'
            ? 'UNSUPPORTED_VERSION'
            : 'NO_INTERPRETER';
  return { code, message: e.message };
}

export function openSession(opts: InspectOptions, started: number): SessionResult {
  const procRoot = opts.procRoot ?? '/proc';
  const pid = opts.pid;
  const limits = {
    maxFrames: clampInt(opts.maxFrames, INSPECT_DEFAULTS.maxFrames, 1, 4096),
    maxThreads: clampInt(opts.maxThreads, INSPECT_DEFAULTS.maxThreads, 1, 4096),
    maxBytes: clampInt(opts.maxBytes, INSPECT_DEFAULTS.maxBytes, 4096, 1024 * 1024 * 1024),
    timeoutMs: clampInt(opts.timeoutMs, INSPECT_DEFAULTS.timeoutMs, 1, 600_000),
    attempts: clampInt(opts.attempts, INSPECT_DEFAULTS.attempts, 1, 20),
    maxNameChars: clampInt(opts.maxNameChars, INSPECT_DEFAULTS.maxNameChars, 16, 4096),
    maxFileChars: clampInt(opts.maxFileChars, INSPECT_DEFAULTS.maxFileChars, 16, 4096),
    maxLineTableBytes: clampInt(
      opts.maxLineTableBytes,
      INSPECT_DEFAULTS.maxLineTableBytes,
      1024,
      16 * 1024 * 1024,
    ),
  };
  const status = readStatus(procRoot, pid);
  const stat = readStat(procRoot, pid);
  if (!status || !stat || stat.state === 'Z')
    return {
      ok: false,
      issue: { code: 'TARGET_GONE', message: `process ${pid} does not exist` },
      nsPid: null,
      version: null,
    };
  const nsPid = status.nsPids[status.nsPids.length - 1] ?? pid;
  let maps: MapEntry[];
  try {
    maps = readMaps(procRoot, pid);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const issue: InspectIssue =
      code === 'EACCES' || code === 'EPERM'
        ? {
            code: 'PERMISSION_DENIED',
            message: `cannot read the memory map of process ${pid} (${code}): the reader needs ptrace-read rights (root, CAP_SYS_PTRACE or the target's uid)`,
          }
        : { code: 'TARGET_GONE', message: `process ${pid} vanished` };
    return { ok: false, issue, nsPid, version: null };
  }
  let raw: ProcMem;
  try {
    raw = openMem(procRoot, pid, false);
  } catch (e) {
    if (e instanceof InspectError)
      return { ok: false, issue: faultFromInspectError(e), nsPid, version: null };
    return { ok: false, issue: issueOf(e), nsPid, version: null };
  }
  let version: string | null = null;
  try {
    const candidates = runtimeCandidates(procRoot, pid, maps);
    const loc = locateRuntime(procRoot, pid, raw, maps, candidates);
    version = formatVersion(loc.offsets.version);
    if (!inspectionSupported(loc.offsets.version))
      throw new InspectFault(
        'UNSUPPORTED_VERSION',
        `target runs Python ${version}: reading stacks and tasks from memory is implemented for CPython 3.14 final releases only`,
      );
    const images = new Set<string>();
    for (const m of maps) if (m.path === loc.image) images.add(imageKey(m));
    const mem = new TargetMemory(raw, () => readableRegions(readMaps(procRoot, pid), images), {
      maxBytes: limits.maxBytes,
      deadline: started + limits.timeoutMs,
    });
    const o = parseInspectOffsets(mem.read(loc.address, LAYOUT_BLOCK_SIZE), loc.offsets.freeThreaded);
    const objects = new ObjectReader(mem, o);
    const frames = new FrameReader(mem, objects, o, limits satisfies FrameLimits);
    return {
      ok: true,
      session: {
        pid,
        nsPid,
        procRoot,
        version,
        loc,
        maps,
        o,
        mem,
        objects,
        frames,
        images,
        limits,
        close: () => raw.close(),
      },
    };
  } catch (e) {
    raw.close();
    if (e instanceof InspectError) return { ok: false, issue: faultFromInspectError(e), nsPid, version };
    return { ok: false, issue: issueOf(e), nsPid, version };
  }
}

const MAX_INTERPRETERS = 256;

/** Every interpreter (main first) with its thread states. Never throws except for fatal faults. */
export function listInterpreters(s: Session): { interpreters: InterpreterRef[]; error: InspectIssue | null } {
  const { mem, o } = s;
  const out: InterpreterRef[] = [];
  let error: InspectIssue | null = null;
  let interp: bigint;
  try {
    interp = mem.u64(s.loc.address + BigInt(o.runtime.interpretersHead));
  } catch (e) {
    if (isFatal(e)) throw e;
    return { interpreters: [], error: issueOf(e) };
  }
  if (interp === 0n)
    return {
      interpreters: [],
      error: { code: 'NO_INTERPRETER', message: 'no running interpreter (starting up or already finalised)' },
    };
  const seen = new Set<bigint>();
  while (interp !== 0n) {
    if (out.length >= MAX_INTERPRETERS) {
      error = {
        code: 'TRUNCATED',
        message: `more than ${MAX_INTERPRETERS} interpreters; the rest are not shown`,
      };
      break;
    }
    if (seen.has(interp)) {
      error = { code: 'CYCLE', message: 'the interpreter list loops' };
      break;
    }
    seen.add(interp);
    try {
      out.push(readInterpreter(s, interp));
      interp = mem.u64(interp + BigInt(o.interp.next));
    } catch (e) {
      if (isFatal(e)) throw e;
      error = issueOf(e);
      break;
    }
  }
  // The list is newest first: the main interpreter (id 0) is normally last.
  out.sort((a, b) => a.id - b.id);
  return { interpreters: out, error };
}

function readInterpreter(s: Session, interp: bigint): InterpreterRef {
  const { mem, o } = s;
  const idRaw = mem.read(interp + BigInt(o.interp.id), 8).readBigInt64LE(0);
  if (idRaw < 0n || idRaw > 1n << 40n)
    throw new InspectFault('CORRUPT', `interpreter id ${idRaw} is implausible`);
  const id = Number(idRaw);
  const ref: InterpreterRef = {
    addr: interp,
    id,
    remoteDebugEnabled: null,
    threads: [],
    mainTstate: null,
    gilHolder: null,
    error: null,
  };
  try {
    ref.remoteDebugEnabled = mem.i32(interp + BigInt(o.interp.remoteDebuggingEnabled)) === 1;
    const threadsMain = mem.u64(interp + BigInt(o.interp.threadsMain));
    const list: ThreadStateRef[] = [];
    const seen = new Set<bigint>();
    let ts = mem.u64(interp + BigInt(o.interp.threadsHead));
    while (ts !== 0n) {
      if (list.length >= s.limits.maxThreads) {
        ref.error = {
          code: 'TRUNCATED',
          message: `more than ${s.limits.maxThreads} threads; the oldest are not shown`,
        };
        break;
      }
      if (seen.has(ts)) {
        ref.error = { code: 'CYCLE', message: `the thread list of interpreter ${id} loops` };
        break;
      }
      seen.add(ts);
      const tid = mem.u64(ts + BigInt(o.tstate.nativeThreadId));
      list.push({ tstate: ts, tid: tid > 0x7fffffffn ? 0 : Number(tid) });
      ts = mem.u64(ts + BigInt(o.tstate.next));
    }
    ref.threads = list.reverse();
    ref.mainTstate =
      threadsMain !== 0n
        ? threadsMain
        : id === 0
          ? (list.find((t) => t.tid === s.nsPid)?.tstate ?? null)
          : null;
    if (!o.freeThreaded) {
      const locked = mem.i32(interp + BigInt(o.interp.gilLocked));
      const holder = mem.u64(interp + BigInt(o.interp.gilHolder));
      ref.gilHolder = locked !== 0 && holder !== 0n ? holder : null;
    }
  } catch (e) {
    if (isFatal(e)) throw e;
    ref.error = issueOf(e);
  }
  return ref;
}
