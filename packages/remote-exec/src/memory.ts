import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/**
 * A target's memory through /proc/PID/mem. Opening performs the kernel's ptrace-attach check once;
 * reads and writes at unmapped addresses fail with EIO.
 */
export class ProcMem {
  private constructor(
    private readonly fd: number,
    readonly writable: boolean,
  ) {}

  static open(memPath: string, writable: boolean): ProcMem {
    return new ProcMem(openSync(memPath, writable ? 'r+' : 'r'), writable);
  }

  read(addr: bigint, len: number): Buffer {
    const buf = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = readSync(this.fd, buf, done, len - done, addr + BigInt(done));
      if (n <= 0) throw Object.assign(new Error(`short read at 0x${addr.toString(16)}`), { code: 'EIO' });
      done += n;
    }
    return buf;
  }

  u64(addr: bigint): bigint {
    return this.read(addr, 8).readBigUInt64LE(0);
  }

  i64(addr: bigint): bigint {
    return this.read(addr, 8).readBigInt64LE(0);
  }

  i32(addr: bigint): number {
    return this.read(addr, 4).readInt32LE(0);
  }

  write(addr: bigint, data: Buffer): void {
    // fs.writeSync silently ignores a BigInt position (it writes at offset 0): always pass a Number.
    // x86-64/aarch64 user addresses are below 2^48, well inside Number.MAX_SAFE_INTEGER.
    if (addr > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('address beyond 2^53');
    let done = 0;
    while (done < data.length) {
      const n = writeSync(this.fd, data, done, data.length - done, Number(addr) + done);
      if (n <= 0) throw Object.assign(new Error(`short write at 0x${addr.toString(16)}`), { code: 'EIO' });
      done += n;
    }
  }

  writeI32(addr: bigint, value: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(value);
    this.write(addr, b);
  }

  writeU64(addr: bigint, value: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    this.write(addr, b);
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}
