import type { ProcMem } from './memory';
import type { RuntimeLocation } from './runtime';

/** The PEP 768 write, in the documented order: path (+NUL), pending flag, then the eval-breaker bit. */

export const EVAL_PLEASE_STOP_BIT = 0x20n;

export interface ThreadSlot {
  tstate: bigint;
  support: bigint;
  pendingAddr: bigint;
  pathAddr: bigint;
  evalBreakerAddr: bigint;
  pathSize: number;
}

export function threadSlot(loc: RuntimeLocation, tstate: bigint): ThreadSlot {
  const o = loc.offsets;
  const support = tstate + o.remoteDebuggerSupport;
  return {
    tstate,
    support,
    pendingAddr: support + o.debuggerPendingCall,
    pathAddr: support + o.debuggerScriptPath,
    evalBreakerAddr: tstate + o.evalBreaker,
    pathSize: o.debuggerScriptPathSize,
  };
}

export function readPending(mem: ProcMem, slot: ThreadSlot): number {
  return mem.i32(slot.pendingAddr);
}

export function writeRequest(mem: ProcMem, slot: ThreadSlot, path: Buffer): void {
  if (path.length > slot.pathSize - 1) throw new Error('path too long');
  mem.write(slot.pathAddr, Buffer.concat([path, Buffer.from([0])]));
  mem.writeI32(slot.pendingAddr, 1);
  // Read-modify-write: the upper bits carry the instrumentation version and must survive.
  const eb = mem.u64(slot.evalBreakerAddr);
  mem.writeU64(slot.evalBreakerAddr, eb | EVAL_PLEASE_STOP_BIT);
}

/**
 * Withdraw our request if it is still pending and still ours. Returns 'withdrawn', or 'consumed' when the
 * target already took it (pending is 0) — the caller must then expect the harness to start.
 */
export function withdrawRequest(
  mem: ProcMem,
  slot: ThreadSlot,
  path: Buffer,
): 'withdrawn' | 'consumed' | 'replaced' {
  if (readPending(mem, slot) !== 1) return 'consumed';
  const current = mem.read(slot.pathAddr, path.length + 1);
  if (!current.equals(Buffer.concat([path, Buffer.from([0])]))) return 'replaced';
  mem.writeI32(slot.pendingAddr, 0);
  // The target may have consumed it between our read and write; writing 0 over its own 0 is harmless,
  // and the caller re-checks for the harness's pickup marker afterwards.
  return 'withdrawn';
}
