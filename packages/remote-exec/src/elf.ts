import { closeSync, openSync, readSync } from 'node:fs';

/**
 * Minimal ELF64 little-endian reader: just enough to find where `_PyRuntime` lives in a mapped image
 * (the `.PyRuntime` section, else the `_PyRuntime` symbol in `.dynsym`/`.symtab`) and the first PT_LOAD.
 * Reads only the headers and tables it needs through a positional reader, never the whole file.
 */

export type ReadAt = (pos: number, len: number) => Buffer;

export interface ElfRuntimeInfo {
  /** ET_EXEC (2) or ET_DYN (3). */
  type: number;
  /** Virtual address of `_PyRuntime` as linked (section address or symbol value). */
  runtimeVaddr: bigint;
  via: 'section' | 'dynsym' | 'symtab';
  /** `p_vaddr - p_vaddr % p_align` of the first PT_LOAD: the link-time address of the offset-0 mapping. */
  loadBase: bigint;
  hasInterp: boolean;
}

export class ElfError extends Error {}

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const PT_LOAD = 1;
const PT_INTERP = 3;

export function fileReader(path: string): { readAt: ReadAt; close: () => void } {
  const fd = openSync(path, 'r');
  return {
    readAt: (pos, len) => {
      const buf = Buffer.alloc(len);
      const n = readSync(fd, buf, 0, len, pos);
      return buf.subarray(0, n);
    },
    close: () => closeSync(fd),
  };
}

export function bufferReader(data: Buffer): ReadAt {
  return (pos, len) => data.subarray(pos, pos + len);
}

interface Section {
  name: string;
  type: number;
  addr: bigint;
  offset: bigint;
  size: bigint;
  link: number;
  entsize: bigint;
}

function cstr(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString('latin1', at, end < 0 ? buf.length : end);
}

export function readElfRuntimeInfo(readAt: ReadAt): ElfRuntimeInfo | null {
  const eh = readAt(0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
  if (eh[4] !== 2) throw new ElfError('not a 64-bit ELF file');
  if (eh[5] !== 1) throw new ElfError('not a little-endian ELF file');
  const type = eh.readUInt16LE(16);
  const phoff = Number(eh.readBigUInt64LE(32));
  const shoff = Number(eh.readBigUInt64LE(40));
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  const shentsize = eh.readUInt16LE(58);
  const shnum = eh.readUInt16LE(60);
  const shstrndx = eh.readUInt16LE(62);

  let loadBase: bigint | null = null;
  let hasInterp = false;
  const ph = readAt(phoff, phentsize * phnum);
  for (let i = 0; i < phnum; i++) {
    const o = i * phentsize;
    if (o + 56 > ph.length) break;
    const pType = ph.readUInt32LE(o);
    if (pType === PT_INTERP) hasInterp = true;
    if (pType === PT_LOAD && loadBase === null) {
      const vaddr = ph.readBigUInt64LE(o + 16);
      const align = ph.readBigUInt64LE(o + 48);
      loadBase = align > 1n ? vaddr - (vaddr % align) : vaddr;
    }
  }
  if (loadBase === null) throw new ElfError('no PT_LOAD segment');
  if (shoff === 0 || shnum === 0) return null; // section headers stripped: caller falls back to a cookie scan

  const sh = readAt(shoff, shentsize * shnum);
  const sections: Section[] = [];
  const nameOffs: number[] = [];
  for (let i = 0; i < shnum; i++) {
    const o = i * shentsize;
    if (o + 64 > sh.length) break;
    nameOffs.push(sh.readUInt32LE(o));
    sections.push({
      name: '',
      type: sh.readUInt32LE(o + 4),
      addr: sh.readBigUInt64LE(o + 16),
      offset: sh.readBigUInt64LE(o + 24),
      size: sh.readBigUInt64LE(o + 32),
      link: sh.readUInt32LE(o + 40),
      entsize: sh.readBigUInt64LE(o + 56),
    });
  }
  const strtab = sections[shstrndx];
  if (strtab) {
    const names = readAt(Number(strtab.offset), Number(strtab.size));
    sections.forEach((s, i) => (s.name = cstr(names, nameOffs[i]!)));
  }
  const rt = sections.find((s) => s.name === '.PyRuntime');
  if (rt) return { type, runtimeVaddr: rt.addr, via: 'section', loadBase, hasInterp };

  for (const [symType, via] of [
    [SHT_DYNSYM, 'dynsym'],
    [SHT_SYMTAB, 'symtab'],
  ] as const) {
    const symSec = sections.find((s) => s.type === symType);
    if (!symSec) continue;
    const strSec = sections[symSec.link];
    if (!strSec) continue;
    const addr = findSymbol(readAt, symSec, strSec, '_PyRuntime');
    if (addr !== null) return { type, runtimeVaddr: addr, via, loadBase, hasInterp };
  }
  return null;
}

function findSymbol(readAt: ReadAt, symSec: Section, strSec: Section, wanted: string): bigint | null {
  const entsize = Number(symSec.entsize) || 24;
  const count = Math.floor(Number(symSec.size) / entsize);
  // Bounded: symbol tables of real interpreters are at most a few MB.
  if (Number(symSec.size) > 64 * 1024 * 1024) return null;
  const syms = readAt(Number(symSec.offset), count * entsize);
  const strs = readAt(Number(strSec.offset), Number(strSec.size));
  const target = Buffer.from(wanted + '\0', 'latin1');
  for (let i = 0; i < count; i++) {
    const o = i * entsize;
    const nameOff = syms.readUInt32LE(o);
    if (
      nameOff + target.length <= strs.length &&
      strs.compare(target, 0, target.length, nameOff, nameOff + target.length) === 0
    ) {
      const value = syms.readBigUInt64LE(o + 8);
      if (value !== 0n) return value;
    }
  }
  return null;
}

/** Where `_PyRuntime` sits in memory for an image whose offset-0 mapping starts at `mappingStart`. */
export function runtimeAddress(info: ElfRuntimeInfo, mappingStart: bigint): bigint {
  return mappingStart + info.runtimeVaddr - info.loadBase;
}
