import { encodeBytes, encodeString } from '@pyreach/protocol/text';
import type { InspectOffsets } from './layout';
import { InspectFault, type TargetMemory } from './memory';

/**
 * Reading Python objects out of a target's memory: str, bytes, small ints, type names and flags. Every length
 * comes from the target and is bounded before anything is allocated; text becomes safe text here (the target
 * chose those bytes).
 */

export const Py_TPFLAGS_LONG_SUBCLASS = 1n << 24n;
export const Py_TPFLAGS_UNICODE_SUBCLASS = 1n << 28n;

export interface TextRead {
  /** Safe text. */
  text: string;
  /** The object holds more characters than were read. */
  truncated: boolean;
  /** Length the object claims. */
  length: number;
}

export interface TypeInfo {
  /** `tp_name` as safe text. */
  name: string;
  flags: bigint;
}

/** Per-report caches and the object readers on top of one TargetMemory. */
export class ObjectReader {
  private readonly types = new Map<bigint, TypeInfo>();

  constructor(
    readonly mem: TargetMemory,
    readonly o: InspectOffsets,
  ) {}

  typeOf(obj: bigint): bigint {
    return this.mem.u64(obj + BigInt(this.o.object.obType));
  }

  typeInfo(type: bigint): TypeInfo {
    const hit = this.types.get(type);
    if (hit) return hit;
    const namePtr = this.mem.u64(type + BigInt(this.o.type.tpName));
    const flags = this.mem.u64(type + BigInt(this.o.type.tpFlags));
    const name = namePtr === 0n ? '' : this.cString(namePtr, 256);
    const info = { name, flags };
    if (this.types.size < 10_000) this.types.set(type, info);
    return info;
  }

  /** A NUL-terminated C string of at most `max` bytes, as safe text. */
  cString(addr: bigint, max: number): string {
    const buf = this.mem.readClipped(addr, max);
    const end = buf.indexOf(0);
    return encodeBytes(end < 0 ? buf : buf.subarray(0, end));
  }

  /** A `str` (any kind, compact or not), at most `maxChars` characters of it. */
  unicode(addr: bigint, maxChars: number): TextRead {
    if (addr === 0n) throw new InspectFault('CORRUPT', 'NULL where a str was expected');
    const u = this.o.unicode;
    const type = this.typeInfo(this.typeOf(addr));
    if ((type.flags & Py_TPFLAGS_UNICODE_SUBCLASS) === 0n)
      throw new InspectFault(
        'CORRUPT',
        `object at 0x${addr.toString(16)} is a ${type.name || '?'}, not a str`,
      );
    const head = this.mem.read(addr, u.asciiSize);
    const length = head.readBigInt64LE(u.length);
    if (length < 0n || length > 1n << 40n)
      throw new InspectFault(
        'CORRUPT',
        `str at 0x${addr.toString(16)} claims an impossible length (${length})`,
      );
    const state = head.readUInt32LE(u.state);
    // PyASCIIObject.state bit-fields: GIL builds start with `interned:2`; free-threaded builds with an
    // `unsigned char interned`.
    const shift = this.o.freeThreaded ? 8 : 2;
    const kind = (state >>> shift) & 7;
    const compact = (state >>> (shift + 3)) & 1;
    const ascii = (state >>> (shift + 4)) & 1;
    if (kind !== 1 && kind !== 2 && kind !== 4)
      throw new InspectFault('CORRUPT', `str at 0x${addr.toString(16)} has an invalid kind (${kind})`);
    if (ascii && kind !== 1)
      throw new InspectFault('CORRUPT', `str at 0x${addr.toString(16)} is inconsistent`);
    const n = Number(length);
    const take = Math.min(n, maxChars);
    let data: bigint;
    if (compact) data = addr + BigInt(ascii ? u.asciiSize : u.size - 8);
    else data = this.mem.u64(addr + BigInt(u.size - 8)); // legacy string: `data.any`
    if (take === 0) return { text: '', truncated: n > 0, length: n };
    const raw = this.mem.read(data, take * kind);
    let text: string;
    if (kind === 1) {
      // ASCII and Latin-1 both map byte → code point; a lying "ascii" flag just shows as Latin-1.
      text = encodeString(raw.toString('latin1'));
    } else if (kind === 2) {
      let s = '';
      for (let i = 0; i < take; i++) s += String.fromCharCode(raw.readUInt16LE(i * 2));
      text = encodeString(s); // lone surrogates become escapes
    } else {
      let s = '';
      for (let i = 0; i < take; i++) {
        const cp = raw.readUInt32LE(i * 4);
        if (cp > 0x10ffff)
          throw new InspectFault('CORRUPT', `str at 0x${addr.toString(16)} holds an invalid code point`);
        s += cp >= 0xd800 && cp <= 0xdfff ? String.fromCharCode(cp) : String.fromCodePoint(cp);
      }
      text = encodeString(s);
    }
    return { text, truncated: n > take, length: n };
  }

  /** A `bytes` object's contents, refusing more than `maxLen` bytes. */
  bytes(addr: bigint, maxLen: number): Buffer {
    if (addr === 0n) throw new InspectFault('CORRUPT', 'NULL where a bytes object was expected');
    const b = this.o.bytes;
    const size = this.mem.read(addr, b.obSval).readBigInt64LE(b.obSize);
    if (size < 0n)
      throw new InspectFault('CORRUPT', `bytes at 0x${addr.toString(16)} claims a negative size`);
    if (size > BigInt(maxLen))
      throw new InspectFault(
        'TRUNCATED',
        `bytes at 0x${addr.toString(16)} are ${size} long (limit ${maxLen})`,
      );
    return this.mem.read(addr + BigInt(b.obSval), Number(size));
  }

  /** A small int (at most 4 digits of 30 bits), as CPython stores it since 3.12 (`lv_tag`). */
  smallInt(addr: bigint): bigint {
    const l = this.o.long;
    const tag = this.mem.u64(addr + BigInt(l.lvTag));
    const ndigits = Number(tag >> 3n);
    const sign = tag & 3n;
    if (sign === 1n) return 0n;
    if (ndigits > 4 || sign === 3n)
      throw new InspectFault('CORRUPT', `int at 0x${addr.toString(16)} is not a small int`);
    const digits = this.mem.read(addr + BigInt(l.obDigit), ndigits * 4);
    let v = 0n;
    for (let i = ndigits - 1; i >= 0; i--) v = (v << 30n) | BigInt(digits.readUInt32LE(i * 4) & 0x3fffffff);
    return sign === 2n ? -v : v;
  }
}
