/**
 * The parts of `_Py_DebugOffsets` that inspection needs (frames, code objects, strings, bytes, ints, sets,
 * generators, linked lists), beyond what the injection path parses in ../offsets.ts. Positions inside the
 * block are those of CPython 3.14 final releases (docs/cpython-remote-exec.md §1.2, checked against the
 * 3.14.0 bindings and the 3.14.10 binary); 3.15 moves the thread-state fields and is refused until its
 * positions are checked against a real binary.
 *
 * The *values* come from the target's own memory, which the target can overwrite: every one is checked to
 * lie inside the struct it describes and every size to be plausible, so a hostile block cannot make the
 * reader allocate or read without bound.
 */
import type { PyVersion } from '../offsets';
import { InspectFault } from './memory';

export interface InspectOffsets {
  runtime: { finalizing: number; interpretersHead: number };
  interp: {
    size: number;
    id: number;
    next: number;
    threadsHead: number;
    threadsMain: number;
    gilLocked: number;
    gilHolder: number;
    remoteDebuggingEnabled: number;
  };
  tstate: {
    size: number;
    next: number;
    interp: number;
    currentFrame: number;
    threadId: number;
    nativeThreadId: number;
  };
  frame: {
    size: number;
    previous: number;
    executable: number;
    instrPtr: number;
    owner: number;
    stackpointer: number;
    tlbcIndex: number;
  };
  code: {
    size: number;
    filename: number;
    name: number;
    qualname: number;
    linetable: number;
    firstlineno: number;
    codeAdaptive: number;
    tlbc: number;
  };
  object: { size: number; obType: number };
  type: { size: number; tpName: number; tpFlags: number };
  /** `ob_size` of any PyVarObject (read from the tuple entry: the same PyVarObject header). */
  varSize: number;
  set: { size: number; used: number; table: number; mask: number };
  long: { size: number; lvTag: number; obDigit: number };
  bytes: { size: number; obSize: number; obSval: number };
  unicode: { size: number; state: number; length: number; asciiSize: number };
  gen: { size: number; iframe: number; frameState: number };
  llist: { next: number; prev: number };
  freeThreaded: boolean;
}

/** Byte positions in the 3.14 block (u64 each). */
const P314 = {
  size: 760,
  finalizing: 32,
  interpretersHead: 40,
  interpSize: 48,
  interpId: 56,
  interpNext: 64,
  threadsHead: 72,
  threadsMain: 80,
  gilLocked: 144,
  gilHolder: 152,
  tstateSize: 176,
  tstateNext: 192,
  tstateInterp: 200,
  currentFrame: 208,
  threadId: 216,
  nativeThreadId: 224,
  frameSize: 248,
  framePrevious: 256,
  frameExecutable: 264,
  frameInstrPtr: 272,
  frameOwner: 288,
  frameStackpointer: 296,
  frameTlbcIndex: 304,
  codeSize: 312,
  codeFilename: 320,
  codeName: 328,
  codeQualname: 336,
  codeLinetable: 344,
  codeFirstlineno: 352,
  codeAdaptive: 384,
  codeTlbc: 392,
  objectSize: 400,
  obType: 408,
  typeSize: 416,
  tpName: 424,
  tpFlags: 440,
  tupleObSize: 464,
  setSize: 496,
  setUsed: 504,
  setTable: 512,
  setMask: 520,
  longSize: 568,
  lvTag: 576,
  obDigit: 584,
  bytesSize: 592,
  bytesObSize: 600,
  bytesObSval: 608,
  unicodeSize: 616,
  unicodeState: 624,
  unicodeLength: 632,
  asciiSize: 640,
  genSize: 664,
  genIframe: 680,
  genFrameState: 688,
  llistNext: 696,
  llistPrev: 704,
  remoteDebuggingEnabled: 728,
} as const;

/** Which CPython versions inspection knows the layout of. */
export function inspectionSupported(v: PyVersion): boolean {
  return v.major === 3 && v.minor === 14 && v.level === 0xf;
}

export function parseInspectOffsets(block: Buffer, freeThreaded: boolean): InspectOffsets {
  if (block.length < P314.size) throw new InspectFault('CORRUPT', 'debug offsets block is too short');
  const u = (at: number): number => {
    const v = block.readBigUInt64LE(at);
    // Offsets and sizes of interpreter structs: a few MB at most (PyInterpreterState is ~230 KB).
    if (v > 16n * 1024n * 1024n)
      throw new InspectFault('CORRUPT', `debug offset at +${at} is implausible (0x${v.toString(16)})`);
    return Number(v);
  };
  const within = (name: string, size: number, ...offs: number[]): void => {
    for (const o of offs)
      if (o >= size)
        throw new InspectFault(
          'CORRUPT',
          `debug offsets: a ${name} field lies outside its struct (${o} >= ${size})`,
        );
  };
  const o: InspectOffsets = {
    runtime: { finalizing: u(P314.finalizing), interpretersHead: u(P314.interpretersHead) },
    interp: {
      size: u(P314.interpSize),
      id: u(P314.interpId),
      next: u(P314.interpNext),
      threadsHead: u(P314.threadsHead),
      threadsMain: u(P314.threadsMain),
      gilLocked: u(P314.gilLocked),
      gilHolder: u(P314.gilHolder),
      remoteDebuggingEnabled: u(P314.remoteDebuggingEnabled),
    },
    tstate: {
      size: u(P314.tstateSize),
      next: u(P314.tstateNext),
      interp: u(P314.tstateInterp),
      currentFrame: u(P314.currentFrame),
      threadId: u(P314.threadId),
      nativeThreadId: u(P314.nativeThreadId),
    },
    frame: {
      size: u(P314.frameSize),
      previous: u(P314.framePrevious),
      executable: u(P314.frameExecutable),
      instrPtr: u(P314.frameInstrPtr),
      owner: u(P314.frameOwner),
      stackpointer: u(P314.frameStackpointer),
      tlbcIndex: u(P314.frameTlbcIndex),
    },
    code: {
      size: u(P314.codeSize),
      filename: u(P314.codeFilename),
      name: u(P314.codeName),
      qualname: u(P314.codeQualname),
      linetable: u(P314.codeLinetable),
      firstlineno: u(P314.codeFirstlineno),
      codeAdaptive: u(P314.codeAdaptive),
      tlbc: u(P314.codeTlbc),
    },
    object: { size: u(P314.objectSize), obType: u(P314.obType) },
    type: { size: u(P314.typeSize), tpName: u(P314.tpName), tpFlags: u(P314.tpFlags) },
    varSize: u(P314.tupleObSize),
    set: { size: u(P314.setSize), used: u(P314.setUsed), table: u(P314.setTable), mask: u(P314.setMask) },
    long: { size: u(P314.longSize), lvTag: u(P314.lvTag), obDigit: u(P314.obDigit) },
    bytes: { size: u(P314.bytesSize), obSize: u(P314.bytesObSize), obSval: u(P314.bytesObSval) },
    unicode: {
      size: u(P314.unicodeSize),
      state: u(P314.unicodeState),
      length: u(P314.unicodeLength),
      asciiSize: u(P314.asciiSize),
    },
    gen: { size: u(P314.genSize), iframe: u(P314.genIframe), frameState: u(P314.genFrameState) },
    llist: { next: u(P314.llistNext), prev: u(P314.llistPrev) },
    freeThreaded,
  };
  // Sizes the reader copies in one read: bounded well below anything that could hurt.
  const cap = (name: string, v: number, max: number): void => {
    if (v === 0 || v > max)
      throw new InspectFault('CORRUPT', `debug offsets: sizeof(${name}) = ${v} is implausible`);
  };
  cap('PyInterpreterState', o.interp.size, 8 * 1024 * 1024);
  cap('PyThreadState', o.tstate.size, 64 * 1024);
  cap('_PyInterpreterFrame', o.frame.size, 4096);
  cap('PyCodeObject', o.code.size, 4096);
  cap('PyObject', o.object.size, 64);
  cap('PyTypeObject', o.type.size, 4096);
  cap('PySetObject', o.set.size, 4096);
  cap('PyLongObject', o.long.size, 4096);
  cap('PyBytesObject', o.bytes.size, 4096);
  cap('PyUnicodeObject', o.unicode.size, 4096);
  cap('PyGenObject', o.gen.size, 4096);
  const i = o.interp;
  within('PyInterpreterState', i.size, i.id, i.next, i.threadsHead, i.threadsMain, i.remoteDebuggingEnabled);
  if (!freeThreaded) within('PyInterpreterState', i.size, i.gilLocked, i.gilHolder);
  const t = o.tstate;
  within('PyThreadState', t.size, t.next, t.interp, t.currentFrame, t.threadId, t.nativeThreadId);
  const f = o.frame;
  within('_PyInterpreterFrame', f.size, f.previous, f.executable, f.instrPtr, f.owner, f.stackpointer);
  const c = o.code;
  within('PyCodeObject', c.size, c.filename, c.name, c.qualname, c.linetable, c.firstlineno, c.codeAdaptive);
  within('PyObject', o.object.size, o.object.obType);
  within('PyTypeObject', o.type.size, o.type.tpName, o.type.tpFlags);
  within('PySetObject', o.set.size, o.set.used, o.set.table, o.set.mask);
  within('PyLongObject', o.long.size, o.long.lvTag);
  within('PyBytesObject', o.bytes.size + 1, o.bytes.obSize, o.bytes.obSval);
  within('PyUnicodeObject', o.unicode.size, o.unicode.state, o.unicode.length);
  within('PyGenObject', o.gen.size, o.gen.iframe, o.gen.frameState);
  if (o.gen.iframe + f.size > o.gen.size + 64)
    throw new InspectFault('CORRUPT', 'debug offsets: the generator frame does not fit in the generator');
  return o;
}

export const LAYOUT_BLOCK_SIZE = P314.size;
