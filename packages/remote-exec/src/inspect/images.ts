import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { ReadAt } from '../elf';
import { procPath, type MapEntry } from '../procfs';

/**
 * Named ELF sections of images mapped in a target (`.AsyncioDebug` of the `_asyncio` extension), read from
 * the very file the target mapped:
 *
 * 1. `/proc/PID/map_files/START-END`: the kernel's own link to the mapped file — whatever the target's
 *    mount namespace, root or later renames (needs CAP_SYS_ADMIN: root);
 * 2. only when the reader is not root (then it is the target's own user, or holds no more than
 *    CAP_SYS_PTRACE, and map_files is closed to it): the path inside the target's root
 *    (`/proc/PID/root/...`), then the path as printed (chrooted targets), opened without following a final
 *    symlink, non-blocking, and accepted only when the opened file is a regular file with the mapped inode.
 *    Root never walks a path the target can write: a planted symlink could make it open a device.
 *
 * Only headers and the one section are read, each bounded.
 */

export interface SectionInfo {
  /** Where the section lies in the target's memory. */
  address: bigint;
  /** Its bytes as the file holds them. */
  data: Buffer;
}

const MAX_SECTION_TABLE = 4 * 1024 * 1024;

function openMapped(procRoot: string, pid: number, m: MapEntry): number | null {
  const hex = (v: bigint): string => v.toString(16);
  const tries: { path: string; flags: number }[] = [
    {
      path: procPath(procRoot, pid, 'map_files', `${hex(m.start)}-${hex(m.end)}`),
      flags: constants.O_RDONLY | constants.O_NONBLOCK,
    },
  ];
  if (process.getuid?.() !== 0)
    tries.push(
      {
        path: procPath(procRoot, pid, 'root') + m.path,
        flags: constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      },
      { path: m.path, flags: constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK },
    );
  for (const t of tries) {
    let fd: number;
    try {
      fd = openSync(t.path, t.flags);
    } catch {
      continue;
    }
    try {
      const st = fstatSync(fd);
      if (st.isFile() && String(st.ino) === m.inode) return fd;
    } catch {
      /* fall through */
    }
    closeSync(fd);
  }
  return null;
}

function fdReader(fd: number, fileSize: number): ReadAt {
  return (pos, len) => {
    if (pos < 0 || len < 0 || pos > fileSize) return Buffer.alloc(0);
    const n = Math.min(len, fileSize - pos);
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, pos);
    return buf.subarray(0, got);
  };
}

/** Find section `name` in a little-endian ELF64 image via a positional reader. */
export function findElfSection(
  readAt: ReadAt,
  name: string,
  maxSize: number,
): { vaddr: bigint; loadBase: bigint; data: Buffer } | null {
  const eh = readAt(0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1) return null;
  const phoff = Number(eh.readBigUInt64LE(32));
  const shoff = Number(eh.readBigUInt64LE(40));
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  const shentsize = eh.readUInt16LE(58);
  const shnum = eh.readUInt16LE(60);
  const shstrndx = eh.readUInt16LE(62);
  if (shoff === 0 || shnum === 0 || shentsize < 64 || phentsize < 56) return null;
  if (shentsize * shnum > MAX_SECTION_TABLE || phentsize * phnum > MAX_SECTION_TABLE) return null;
  let loadBase: bigint | null = null;
  const ph = readAt(phoff, phentsize * phnum);
  for (let i = 0; i < phnum && (i + 1) * phentsize <= ph.length; i++) {
    const o = i * phentsize;
    if (ph.readUInt32LE(o) === 1) {
      const vaddr = ph.readBigUInt64LE(o + 16);
      const align = ph.readBigUInt64LE(o + 48);
      loadBase = align > 1n ? vaddr - (vaddr % align) : vaddr;
      break;
    }
  }
  if (loadBase === null) return null;
  const sh = readAt(shoff, shentsize * shnum);
  if (sh.length < shentsize * shnum) return null;
  const strHdr = shstrndx * shentsize;
  if (strHdr + 64 > sh.length) return null;
  const strSize = Number(sh.readBigUInt64LE(strHdr + 32));
  if (strSize > MAX_SECTION_TABLE) return null;
  const names = readAt(Number(sh.readBigUInt64LE(strHdr + 24)), strSize);
  const wanted = Buffer.from(name + '\0', 'latin1');
  for (let i = 0; i < shnum; i++) {
    const o = i * shentsize;
    const nameOff = sh.readUInt32LE(o);
    if (nameOff + wanted.length > names.length) continue;
    if (names.compare(wanted, 0, wanted.length, nameOff, nameOff + wanted.length) !== 0) continue;
    const type = sh.readUInt32LE(o + 4);
    const size = Number(sh.readBigUInt64LE(o + 32));
    if (type !== 1 || size > maxSize) return null; // PROGBITS of a sane size, or nothing
    const data = readAt(Number(sh.readBigUInt64LE(o + 24)), size);
    if (data.length !== size) return null;
    return { vaddr: sh.readBigUInt64LE(o + 16), loadBase, data };
  }
  return null;
}

/** Section `name` of the image mapped at `m` (its offset-0 mapping), or null when it has none / is unreadable. */
export function mappedSection(
  procRoot: string,
  pid: number,
  m: MapEntry,
  name: string,
  maxSize: number,
): SectionInfo | null {
  const fd = openMapped(procRoot, pid, m);
  if (fd === null) return null;
  try {
    const size = fstatSync(fd).size;
    const s = findElfSection(fdReader(fd, size), name, maxSize);
    if (!s) return null;
    return { address: m.start + s.vaddr - s.loadBase, data: s.data };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
