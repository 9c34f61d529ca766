import type { InspectIssue, StackFrame } from '@pyreach/protocol/inspect';
import type { InspectOffsets } from './layout';
import { lineForInstruction } from './linetable';
import { InspectFault, isFatal, type TargetMemory } from './memory';
import type { ObjectReader } from './objects';

/**
 * Python frames out of a target's memory: `_PyInterpreterFrame` chains (a thread's `current_frame` →
 * `previous` → …, or a coroutine's embedded frame), each frame's code object (qualified name, file, location
 * table) and its line from `instr_ptr`.
 */

/** `_PyInterpreterFrame.owner` in 3.14. */
export const FRAME_OWNED_BY_THREAD = 0;
export const FRAME_OWNED_BY_GENERATOR = 1;
export const FRAME_OWNED_BY_FRAME_OBJECT = 2;
/** Shim frames the interpreter pushes at entry points (no Python code): skipped, never shown. */
export const FRAME_OWNED_BY_INTERPRETER = 3;
export const FRAME_OWNED_BY_CSTACK = 4;

export interface FrameLimits {
  maxFrames: number;
  maxNameChars: number;
  maxFileChars: number;
  maxLineTableBytes: number;
  /** Walks of one chain before giving up on a chain that keeps failing (torn by the running target). */
  attempts: number;
}

interface CodeInfo {
  function: string;
  file: string;
  firstLine: number;
  table: Buffer | null;
  /** Why `table` is null (too long, unreadable). */
  tableIssue: InspectIssue | null;
  codeStart: bigint;
  codeUnits: number;
}

function cut(t: { text: string; truncated: boolean; length: number }): string {
  return t.truncated ? `${t.text}…(cut, ${t.length} characters)` : t.text;
}

/** A name inside an error message: short (the message has a bound, the name does not). */
export function brief(name: string): string {
  const chars = Array.from(name); // whole code points: an escape is a surrogate pair
  return chars.length > 120 ? `${chars.slice(0, 120).join('')}…` : name;
}

function issueOf(e: unknown): InspectIssue {
  if (e instanceof InspectFault) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: `reader error: ${(e as Error)?.message ?? String(e)}` };
}

export { issueOf };

/** One frame as read: its shown form (null for shim frames) and where the chain goes next. */
export interface RawFrame {
  shown: StackFrame | null;
  previous: bigint;
  owner: number;
  stackpointer: bigint;
  /** Issue with this frame that did not stop the walk (no line table, instruction outside the code). */
  issue: InspectIssue | null;
}

export class FrameReader {
  private readonly codes = new Map<bigint, CodeInfo | InspectFault>();

  constructor(
    private readonly mem: TargetMemory,
    private readonly objects: ObjectReader,
    private readonly o: InspectOffsets,
    readonly limits: FrameLimits,
  ) {}

  private code(addr: bigint): CodeInfo {
    const hit = this.codes.get(addr);
    if (hit instanceof InspectFault) throw hit;
    if (hit) return hit;
    try {
      const info = this.readCode(addr);
      if (this.codes.size < 50_000) this.codes.set(addr, info);
      return info;
    } catch (e) {
      // Torn reads of a live object must be retried, and budget/deadline faults end everything: cache only
      // what is structurally wrong.
      if (
        e instanceof InspectFault &&
        (e.code === 'CORRUPT' || e.code === 'OUT_OF_BOUNDS') &&
        this.codes.size < 50_000
      )
        this.codes.set(addr, e);
      throw e;
    }
  }

  private readCode(addr: bigint): CodeInfo {
    const c = this.o.code;
    const type = this.objects.typeInfo(this.objects.typeOf(addr));
    if (type.name !== 'code')
      throw new InspectFault(
        'CORRUPT',
        `frame executable at 0x${addr.toString(16)} is a ${type.name || '?'}, not code`,
      );
    const raw = this.mem.read(addr, c.size);
    const ptr = (off: number): bigint => raw.readBigUInt64LE(off) & ~3n;
    const codeUnits = raw.readBigInt64LE(this.o.varSize);
    if (codeUnits < 0n || codeUnits > 1n << 24n)
      throw new InspectFault(
        'CORRUPT',
        `code object at 0x${addr.toString(16)} claims ${codeUnits} instructions`,
      );
    const fn = this.objects.unicode(ptr(c.qualname), this.limits.maxNameChars);
    const file = this.objects.unicode(ptr(c.filename), this.limits.maxFileChars);
    let table: Buffer | null = null;
    let tableIssue: InspectIssue | null = null;
    try {
      table = this.objects.bytes(ptr(c.linetable), this.limits.maxLineTableBytes);
    } catch (e) {
      if (isFatal(e)) throw e;
      tableIssue = issueOf(e);
    }
    return {
      function: cut(fn),
      file: cut(file),
      firstLine: raw.readInt32LE(c.firstlineno),
      table,
      tableIssue,
      codeStart: addr + BigInt(c.codeAdaptive),
      codeUnits: Number(codeUnits),
    };
  }

  /** Start of the bytecode `instr_ptr` points into: the code's own, or (free-threaded) a thread's copy. */
  private bytecodeStart(code: bigint, info: CodeInfo, frame: Buffer): bigint {
    if (!this.o.freeThreaded || this.o.frame.tlbcIndex === 0 || this.o.code.tlbc === 0) return info.codeStart;
    // Free-threaded builds run thread-local copies of the bytecode: `co_tlbc` → { size, entries[] },
    // indexed by the frame's tlbc_index. Not exercised here (no free-threaded target was run).
    const idx = frame.readInt32LE(this.o.frame.tlbcIndex);
    if (idx <= 0) return info.codeStart;
    const arr = this.mem.ptr(code + BigInt(this.o.code.tlbc));
    const size = this.mem.read(arr, 8).readBigInt64LE(0);
    if (size <= 0n || size > 4096n || BigInt(idx) >= size) return info.codeStart;
    return this.mem.u64(arr + 8n + BigInt(idx) * 8n);
  }

  /** Read the frame at `addr`. Throws InspectFault for a frame that cannot be read or makes no sense. */
  frame(addr: bigint): RawFrame {
    const f = this.o.frame;
    const raw = this.mem.read(addr, f.size);
    const previous = raw.readBigUInt64LE(f.previous);
    const owner = raw[f.owner]!;
    const stackpointer = raw.readBigUInt64LE(f.stackpointer) & ~3n;
    if (owner === FRAME_OWNED_BY_INTERPRETER || owner === FRAME_OWNED_BY_CSTACK)
      return { shown: null, previous, owner, stackpointer, issue: null };
    if (owner > FRAME_OWNED_BY_CSTACK)
      throw new InspectFault('CORRUPT', `frame at 0x${addr.toString(16)} has an unknown owner (${owner})`);
    const exe = raw.readBigUInt64LE(f.executable) & ~3n;
    if (exe === 0n) return { shown: null, previous, owner, stackpointer, issue: null };
    const info = this.code(exe);
    const ip = raw.readBigUInt64LE(f.instrPtr);
    const start = this.bytecodeStart(exe, info, raw);
    let line: number | null = null;
    let issue: InspectIssue | null = info.tableIssue;
    const delta = ip - start;
    if (delta < 0n || delta % 2n !== 0n || delta / 2n >= BigInt(Math.max(info.codeUnits, 1))) {
      issue ??= {
        code: 'CORRUPT',
        message: `instruction pointer of ${brief(info.function)} points outside its code`,
      };
    } else if (info.table) {
      const r = lineForInstruction(info.table, info.firstLine, Number(delta / 2n));
      if (r.ok) line = r.line;
      else issue ??= { code: 'CORRUPT', message: `${brief(info.function)}: ${r.message}` };
    }
    return {
      shown: { function: info.function, file: info.file, line },
      previous,
      owner,
      stackpointer,
      issue,
    };
  }

  /**
   * Walk a frame chain from `head` (innermost first), up to and including the frame at `stopAfter` if given. Bounded by maxFrames shown frames (and as many shim
   * frames), stops at a repeated frame (CYCLE). Never throws; a budget or deadline fault comes back as
   * `fatal` with the frames read before it.
   */
  walk(
    head: bigint,
    stopAfter?: bigint,
  ): {
    frames: StackFrame[];
    truncated: boolean;
    error: InspectIssue | null;
    fatal: boolean;
    /** `stopAfter` was reached (the walk ended with that frame). */
    reached: boolean;
  } {
    const frames: StackFrame[] = [];
    const seen = new Set<bigint>();
    let error: InspectIssue | null = null;
    let truncated = false;
    let addr = head;
    let hops = 0;
    while (addr !== 0n) {
      if (frames.length >= this.limits.maxFrames || hops >= this.limits.maxFrames * 2 + 16) {
        truncated = true;
        break;
      }
      if (seen.has(addr)) {
        error = { code: 'CYCLE', message: `the frame chain loops back to 0x${addr.toString(16)}` };
        break;
      }
      seen.add(addr);
      hops++;
      let fr: RawFrame;
      try {
        fr = this.frame(addr);
      } catch (e) {
        error = issueOf(e);
        if (isFatal(e)) return { frames, truncated, error, fatal: true, reached: false };
        break;
      }
      if (fr.shown) frames.push(fr.shown);
      if (fr.issue && !error) error = fr.issue;
      if (addr === stopAfter) return { frames, truncated, error, fatal: false, reached: true };
      addr = fr.previous;
    }
    return { frames, truncated, error, fatal: false, reached: false };
  }
}
