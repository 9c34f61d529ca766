/**
 * `_Py_DebugOffsets`: the self-describing block at the start of `_PyRuntime` (see
 * docs/cpython-remote-exec.md §1). Only the *positions of the fields inside the block* depend on the CPython
 * minor version; the *values* (offsets into the interpreter's structs) are read from the target at run
 * time and never assumed.
 */

export const COOKIE = Buffer.from('xdebugpy', 'latin1');
/** Bytes needed to decide the version: cookie, version, free_threaded. */
export const HEADER_SIZE = 24;

/** Byte positions inside `_Py_DebugOffsets` of the fields the engine uses. */
export interface OffsetsLayout {
  size: number;
  finalizing: number;
  interpretersHead: number;
  interpSize: number;
  interpId: number;
  interpNext: number;
  threadsHead: number;
  threadsMain: number;
  tstateSize: number;
  tstateNext: number;
  tstateThreadId: number;
  tstateNativeThreadId: number;
  evalBreaker: number;
  remoteDebuggerSupport: number;
  remoteDebuggingEnabled: number;
  debuggerPendingCall: number;
  debuggerScriptPath: number;
  debuggerScriptPathSize: number;
}

/**
 * Layouts of final releases by (major, minor). 3.14: 760 bytes, checked against v3.14.0 bindings and the
 * 3.14.10 headers; 3.15: 888 bytes, from the 3.15.2 headers (only the fields below differ in position).
 */
export const LAYOUTS: ReadonlyMap<string, OffsetsLayout> = new Map([
  [
    '3.14',
    {
      size: 760,
      finalizing: 32,
      interpretersHead: 40,
      interpSize: 48,
      interpId: 56,
      interpNext: 64,
      threadsHead: 72,
      threadsMain: 80,
      tstateSize: 176,
      tstateNext: 192,
      tstateThreadId: 216,
      tstateNativeThreadId: 224,
      evalBreaker: 712,
      remoteDebuggerSupport: 720,
      remoteDebuggingEnabled: 728,
      debuggerPendingCall: 736,
      debuggerScriptPath: 744,
      debuggerScriptPathSize: 752,
    },
  ],
  [
    '3.15',
    {
      size: 888,
      finalizing: 32,
      interpretersHead: 40,
      interpSize: 48,
      interpId: 56,
      interpNext: 64,
      threadsHead: 72,
      threadsMain: 80,
      tstateSize: 176,
      tstateNext: 192,
      tstateThreadId: 240,
      tstateNativeThreadId: 248,
      evalBreaker: 840,
      remoteDebuggerSupport: 848,
      remoteDebuggingEnabled: 856,
      debuggerPendingCall: 864,
      debuggerScriptPath: 872,
      debuggerScriptPathSize: 880,
    },
  ],
]);

export interface PyVersion {
  major: number;
  minor: number;
  micro: number;
  /** 0xA alpha, 0xB beta, 0xC candidate, 0xF final. */
  level: number;
  serial: number;
  hex: number;
}

export function decodeVersion(hex: number): PyVersion {
  return {
    major: (hex >>> 24) & 0xff,
    minor: (hex >>> 16) & 0xff,
    micro: (hex >>> 8) & 0xff,
    level: (hex >>> 4) & 0xf,
    serial: hex & 0xf,
    hex,
  };
}

export function formatVersion(v: PyVersion): string {
  const base = `${v.major}.${v.minor}.${v.micro}`;
  const level = ({ 0xa: 'a', 0xb: 'b', 0xc: 'rc' } as Record<number, string>)[v.level];
  return level ? `${base}${level}${v.serial}` : base;
}

export interface DebugOffsets {
  version: PyVersion;
  freeThreaded: boolean;
  layout: OffsetsLayout;
  /** Resolved values (offsets into the target's structs), read from the target. */
  finalizing: bigint;
  interpretersHead: bigint;
  interpId: bigint;
  interpNext: bigint;
  threadsHead: bigint;
  threadsMain: bigint;
  tstateNext: bigint;
  tstateNativeThreadId: bigint;
  evalBreaker: bigint;
  remoteDebuggerSupport: bigint;
  remoteDebuggingEnabled: bigint;
  debuggerPendingCall: bigint;
  debuggerScriptPath: bigint;
  debuggerScriptPathSize: number;
}

export type HeaderCheck =
  | { ok: true; version: PyVersion; freeThreaded: boolean; layout: OffsetsLayout }
  | { ok: false; reason: 'bad_cookie' | 'unsupported'; version?: PyVersion; message: string };

export function checkHeader(header: Buffer): HeaderCheck {
  if (header.length < HEADER_SIZE || !header.subarray(0, 8).equals(COOKIE)) {
    return {
      ok: false,
      reason: 'bad_cookie',
      message: 'no _Py_DebugOffsets cookie ("xdebugpy") at _PyRuntime',
    };
  }
  const version = decodeVersion(Number(header.readBigUInt64LE(8) & 0xffffffffn));
  const freeThreaded = header.readBigUInt64LE(16) !== 0n;
  const layout = LAYOUTS.get(`${version.major}.${version.minor}`);
  if (version.level !== 0xf || !layout) {
    const supported = [...LAYOUTS.keys()].join(', ');
    const why =
      version.level !== 0xf
        ? 'pre-release interpreters are not supported'
        : 'no offsets layout for this version';
    return {
      ok: false,
      reason: 'unsupported',
      version,
      message: `target runs Python ${formatVersion(version)}: ${why}; supported: final releases of ${supported}`,
    };
  }
  return { ok: true, version, freeThreaded, layout };
}

export function parseDebugOffsets(
  block: Buffer,
  check: { version: PyVersion; freeThreaded: boolean; layout: OffsetsLayout },
): DebugOffsets {
  const l = check.layout;
  if (block.length < l.size)
    throw new Error(`_Py_DebugOffsets block too short (${block.length} < ${l.size})`);
  const u = (at: number): bigint => block.readBigUInt64LE(at);
  const pathSize = Number(u(l.debuggerScriptPathSize));
  return {
    version: check.version,
    freeThreaded: check.freeThreaded,
    layout: l,
    finalizing: u(l.finalizing),
    interpretersHead: u(l.interpretersHead),
    interpId: u(l.interpId),
    interpNext: u(l.interpNext),
    threadsHead: u(l.threadsHead),
    threadsMain: u(l.threadsMain),
    tstateNext: u(l.tstateNext),
    tstateNativeThreadId: u(l.tstateNativeThreadId),
    evalBreaker: u(l.evalBreaker),
    remoteDebuggerSupport: u(l.remoteDebuggerSupport),
    remoteDebuggingEnabled: u(l.remoteDebuggingEnabled),
    debuggerPendingCall: u(l.debuggerPendingCall),
    debuggerScriptPath: u(l.debuggerScriptPath),
    debuggerScriptPathSize: pathSize > 0 && pathSize <= 65536 ? pathSize : 512,
  };
}
