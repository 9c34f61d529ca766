import type { InspectIssueCode } from '@pyreach/protocol/inspect';
import type { ProcMem } from '../memory';
import type { MapEntry } from '../procfs';

/**
 * Bounded reading of a (possibly hostile) target's memory. Every pointer the reader follows came from the
 * target, so each read is checked before it is made:
 *
 * - **where**: only inside readable mappings that are anonymous memory (heap, pymalloc arenas, thread
 *   stacks, the frame data stacks) or CPython's own images (the interpreter binary / libpython, `_asyncio`).
 *   A read of a page backed by any other file could block for as long as that file's server wants (a FUSE
 *   file the target mapped itself), so such addresses are refused, never touched (`OUT_OF_BOUNDS`);
 * - **how much**: each read is at most `maxReadLen`, and all reads of one report share `maxBytes`;
 * - **how long**: every read checks the report's deadline.
 *
 * Failures are `InspectFault`s with the code a report carries; callers catch them per thread/task.
 */
export class InspectFault extends Error {
  constructor(
    readonly code: InspectIssueCode,
    message: string,
  ) {
    super(message);
  }
}

/** Faults that end the whole report, not just the thread or task being read. */
export function isFatal(e: unknown): boolean {
  return e instanceof InspectFault && (e.code === 'BUDGET_EXCEEDED' || e.code === 'DEADLINE_EXCEEDED');
}

export interface Region {
  start: bigint;
  end: bigint;
}

const KERNEL_SPECIAL = new Set(['[vvar]', '[vvar_vclock]', '[vsyscall]', '[vdso]']);

/** `dev:inode` of a mapping: how images are named in the allow-list. */
export function imageKey(m: Pick<MapEntry, 'dev' | 'inode'>): string {
  return `${m.dev}:${m.inode}`;
}

/** The mappings the reader may touch, merged where adjacent, sorted. */
export function readableRegions(maps: MapEntry[], images: ReadonlySet<string>): Region[] {
  const out: Region[] = [];
  for (const m of maps) {
    if (m.perms[0] !== 'r') continue;
    const anonymous =
      (m.path === '' && m.inode === '0') || (m.path.startsWith('[') && !KERNEL_SPECIAL.has(m.path));
    if (!anonymous && !(m.path.startsWith('/') && images.has(imageKey(m)))) continue;
    const last = out[out.length - 1];
    if (last && last.end === m.start) last.end = m.end;
    else out.push({ start: m.start, end: m.end });
  }
  return out.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

export interface MemoryLimits {
  /** Total bytes all reads of one report may copy. */
  maxBytes: number;
  /** `performance.now()` after which every read fails with DEADLINE_EXCEEDED. */
  deadline: number;
  /** Largest single read (default 1 MiB). */
  maxReadLen?: number;
}

// User space on x86-64 and aarch64 ends below 2^48 (2^56 with 5-level paging / LVA).
const ADDRESS_LIMIT = 1n << 56n;
const MAX_REFRESHES = 4;

export class TargetMemory {
  bytesRead = 0;
  reads = 0;
  private regions: Region[];
  private refreshes = 0;
  private readonly maxReadLen: number;

  constructor(
    private readonly mem: ProcMem,
    private readonly loadRegions: () => Region[],
    private readonly limits: MemoryLimits,
  ) {
    this.regions = loadRegions();
    this.maxReadLen = limits.maxReadLen ?? 1024 * 1024;
  }

  /** Take the memory map again (after the allow-list grew). */
  refresh(): void {
    this.regions = this.loadRegions();
  }

  /** True when [addr, addr+len) lies inside one merged allowed region. */
  private allowed(addr: bigint, len: number): boolean {
    const end = addr + BigInt(len);
    let lo = 0;
    let hi = this.regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.regions[mid]!;
      if (addr < r.start) hi = mid - 1;
      else if (addr >= r.end) lo = mid + 1;
      else return end <= r.end;
    }
    return false;
  }

  read(addr: bigint, len: number): Buffer {
    if (!Number.isInteger(len) || len < 0 || len > this.maxReadLen)
      throw new InspectFault('CORRUPT', `refusing a read of ${len} bytes (limit ${this.maxReadLen})`);
    if (performance.now() > this.limits.deadline)
      throw new InspectFault('DEADLINE_EXCEEDED', 'the time budget for reading this process ran out');
    if (this.bytesRead + len > this.limits.maxBytes)
      throw new InspectFault(
        'BUDGET_EXCEEDED',
        `the byte budget for reading this process (${this.limits.maxBytes}) is used up`,
      );
    if (addr <= 0n || addr + BigInt(len) > ADDRESS_LIMIT)
      throw new InspectFault('READ_FAULT', `invalid address 0x${addr.toString(16)}`);
    if (!this.allowed(addr, len)) {
      // The target may have mapped memory since the list was taken: look again, a bounded number of times.
      if (this.refreshes < MAX_REFRESHES) {
        this.refreshes++;
        try {
          this.regions = this.loadRegions();
        } catch {
          throw new InspectFault('TARGET_GONE', 'the process memory map could not be read again');
        }
      }
      if (!this.allowed(addr, len))
        throw new InspectFault(
          'OUT_OF_BOUNDS',
          `address 0x${addr.toString(16)} (+${len}) is outside anonymous memory and CPython's own images`,
        );
    }
    this.reads++;
    this.bytesRead += len;
    try {
      return this.mem.read(addr, len);
    } catch {
      throw new InspectFault('READ_FAULT', `could not read ${len} bytes at 0x${addr.toString(16)}`);
    }
  }

  /**
   * Up to `maxLen` bytes from `addr`, cut where its allowed region ends (C strings: their length is unknown
   * until the NUL). Throws like read() when not even the first byte may be read.
   */
  readClipped(addr: bigint, maxLen: number): Buffer {
    let len = maxLen;
    for (const r of this.regions)
      if (addr >= r.start && addr < r.end) {
        const room = r.end - addr;
        if (room < BigInt(len)) len = Number(room);
        break;
      }
    return this.read(addr, Math.max(1, len));
  }

  u64(addr: bigint): bigint {
    return this.read(addr, 8).readBigUInt64LE(0);
  }

  /** A pointer that may carry tag bits in its low two bits (`_PyStackRef`, tagged object pointers). */
  ptr(addr: bigint): bigint {
    return this.u64(addr) & ~3n;
  }

  i32(addr: bigint): number {
    return this.read(addr, 4).readInt32LE(0);
  }

  u8(addr: bigint): number {
    return this.read(addr, 1)[0]!;
  }
}
