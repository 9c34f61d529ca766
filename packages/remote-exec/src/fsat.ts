/**
 * Directory handles for space someone else can write: openat/mkdirat/unlinkat with O_NOFOLLOW, O_EXCL and
 * O_DIRECTORY, plus flock — system calls Node's fs lacks, reached through koffi (one well-kept FFI, prebuilt
 * binaries, no install script). Everything here works on descriptors: a path is only ever one component,
 * resolved relative to a directory the caller opened and checked, and never through a symbolic link.
 *
 * koffi is loaded once, lazily (`loadFsat()`), so the agent's single-file bundle starts (and `--help` works)
 * even where the native file is missing; the first engine call that needs it reports why it failed.
 */
import { closeSync, constants, fstatSync, readSync, type Stats } from 'node:fs';
import { createRequire } from 'node:module';

export const AT_FDCWD = -100;
const AT_REMOVEDIR = 0x200;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** Flags Node's fs.constants has (their values differ between architectures), plus the two it lacks. */
export const O = {
  RDONLY: constants.O_RDONLY,
  WRONLY: constants.O_WRONLY,
  RDWR: constants.O_RDWR,
  CREAT: constants.O_CREAT,
  EXCL: constants.O_EXCL,
  NOCTTY: constants.O_NOCTTY,
  NONBLOCK: constants.O_NONBLOCK,
  DIRECTORY: constants.O_DIRECTORY,
  NOFOLLOW: constants.O_NOFOLLOW,
  APPEND: constants.O_APPEND,
  // Same value on x86-64, aarch64 and the generic Linux ABI.
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

interface Native {
  openat: (dirfd: number, path: string, flags: number, ...rest: unknown[]) => number;
  mkdirat: (dirfd: number, path: string, mode: number) => number;
  unlinkat: (dirfd: number, path: string, flags: number) => number;
  flock: (fd: number, op: number) => number;
  /** For wake (src/wake.ts): `ptrace` with a buffer for data (GETREGS/SETREGS), `ptraceN` with numbers. */
  ptrace: (request: number, pid: number, addr: Buffer | null, data: Buffer | null) => number | bigint;
  ptraceN: (request: number, pid: number, addr: number, data: number) => number | bigint;
  waitpid: (pid: number, status: Buffer, options: number) => number;
  errno: () => number;
}

let native: Native | null = null;
let loadError: Error | null = null;

/** Load koffi and bind the calls (once). Throws with the reason when the FFI is unavailable. */
export async function loadFsat(): Promise<void> {
  if (native) return;
  if (loadError) throw loadError;
  let koffi: typeof import('koffi');
  try {
    const mod = (await import('koffi')) as unknown as { default?: typeof import('koffi') };
    koffi = (mod.default ?? mod) as typeof import('koffi');
    if (typeof koffi.load !== 'function') throw new Error('koffi has no load()');
  } catch (first) {
    // A bundle without koffi inlined: resolve it from the module's own location.
    try {
      koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    } catch {
      loadError = new Error(
        `the FFI module koffi could not be loaded (${(first as Error).message}); the engine needs it for safe staging`,
      );
      throw loadError;
    }
  }
  const libc = koffi.load('libc.so.6');
  native = {
    openat: libc.func('int openat(int dirfd, const char *path, int flags, ...)') as Native['openat'],
    mkdirat: libc.func('int mkdirat(int dirfd, const char *path, uint32_t mode)') as Native['mkdirat'],
    unlinkat: libc.func('int unlinkat(int dirfd, const char *path, int flags)') as Native['unlinkat'],
    flock: libc.func('int flock(int fd, int op)') as Native['flock'],
    ptrace: libc.func('long ptrace(int request, int pid, void *addr, void *data)') as Native['ptrace'],
    ptraceN: libc.func('ptrace', 'long', ['int', 'int', 'intptr_t', 'intptr_t']) as Native['ptraceN'],
    waitpid: libc.func('int waitpid(int pid, void *status, int options)') as Native['waitpid'],
    errno: () => koffi.errno(),
  };
}

/** Raw ptrace/waitpid for wake (src/wake.ts); loadFsat() must have been awaited. errno after a -1. */
export function ptraceCalls(): Pick<Native, 'ptrace' | 'ptraceN' | 'waitpid' | 'errno'> {
  return n();
}

export function fsatLoaded(): boolean {
  return native !== null;
}

function n(): Native {
  if (!native) throw new Error('loadFsat() was not awaited before using directory handles');
  return native;
}

const ERRNO: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  4: 'EINTR',
  6: 'ENXIO',
  11: 'EAGAIN',
  13: 'EACCES',
  17: 'EEXIST',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  28: 'ENOSPC',
  30: 'EROFS',
  36: 'ENAMETOOLONG',
  39: 'ENOTEMPTY',
  40: 'ELOOP',
  95: 'EOPNOTSUPP',
};

export class FsatError extends Error {
  constructor(
    readonly op: string,
    readonly path: string,
    readonly errno: number,
  ) {
    super(`${op} ${JSON.stringify(path)}: ${ERRNO[errno] ?? `errno ${errno}`}`);
  }
  get code(): string {
    return ERRNO[this.errno] ?? `E${this.errno}`;
  }
}

/** One path component: no slash, not `.` or `..`, not empty. */
export function checkName(name: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
    throw new Error(`not a single path component: ${JSON.stringify(name)}`);
}

/** openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode) for one component. */
export function openAt(dirfd: number, name: string, flags: number, mode = 0): number {
  checkName(name);
  const fd = n().openat(dirfd, name, flags | O.CLOEXEC | O.NOFOLLOW, 'int', mode);
  if (fd < 0) throw new FsatError('openat', name, n().errno());
  return fd;
}

/** Open an absolute path the caller trusts entirely (e.g. `/proc/PID/root`, a magic link it means to follow). */
export function openTrusted(path: string, flags: number): number {
  const fd = n().openat(AT_FDCWD, path, flags | O.CLOEXEC, 'int', 0);
  if (fd < 0) throw new FsatError('open', path, n().errno());
  return fd;
}

/** Open a directory below `dirfd`, one component at a time, refusing every symbolic link on the way. */
export function openDirBeneath(dirfd: number, relPath: string): number {
  const parts = relPath.split('/').filter(Boolean);
  let fd = dirfd;
  try {
    for (const part of parts) {
      const next = openAt(fd, part, O.RDONLY | O.DIRECTORY);
      if (fd !== dirfd) closeSync(fd);
      fd = next;
    }
  } catch (e) {
    if (fd !== dirfd) closeSync(fd);
    throw e;
  }
  if (fd !== dirfd) return fd;
  const dup = n().openat(dirfd, '.', O.RDONLY | O.DIRECTORY | O.CLOEXEC, 'int', 0);
  if (dup < 0) throw new FsatError('openat', '.', n().errno());
  return dup;
}

export function mkdirAt(dirfd: number, name: string, mode: number): void {
  checkName(name);
  if (n().mkdirat(dirfd, name, mode) < 0) throw new FsatError('mkdirat', name, n().errno());
}

/** Remove one entry (never follows: unlinkat works on the entry itself). */
export function unlinkAt(dirfd: number, name: string, dir = false): void {
  checkName(name);
  if (n().unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0) < 0)
    throw new FsatError('unlinkat', name, n().errno());
}

/** lstat of one entry below `dirfd` (O_PATH|O_NOFOLLOW: opens nothing, follows nothing, never blocks). */
export function lstatAt(dirfd: number, name: string): Stats | null {
  let fd: number;
  try {
    fd = openAt(dirfd, name, O.PATH);
  } catch (e) {
    if (e instanceof FsatError && e.code === 'ENOENT') return null;
    throw e;
  }
  try {
    return fstatSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Try to take an exclusive flock without blocking; true when taken. */
export function tryLock(fd: number): boolean {
  if (n().flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = n().errno();
  if (e === 11 || e === 4) return false;
  throw new FsatError('flock', String(fd), e);
}

export function unlock(fd: number): void {
  n().flock(fd, LOCK_UN);
}

export type FileKind = 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'char device' | 'block device';

export function kindOf(st: Stats): FileKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'char device';
  return 'block device';
}

/**
 * Read a regular file below `dirfd` without following a link and without blocking: O_NOFOLLOW|O_NONBLOCK,
 * then fstat on the opened descriptor (regular file, at most `maxBytes`), then read from that descriptor.
 * Returns null when absent; throws FsatError/Error for anything else (a link, a FIFO, a device, too big).
 */
export function readRegularAt(dirfd: number, name: string, maxBytes: number): Buffer | null {
  let fd: number;
  try {
    fd = openAt(dirfd, name, O.RDONLY | O.NONBLOCK | O.NOCTTY);
  } catch (e) {
    if (e instanceof FsatError && e.code === 'ENOENT') return null;
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${name} is a ${kindOf(st)}, not a regular file`);
    if (st.size > maxBytes) throw new Error(`${name} is ${st.size} bytes, more than the ${maxBytes} allowed`);
    return readFd(fd, 0, maxBytes);
  } finally {
    closeSync(fd);
  }
}

/** Read up to `max` bytes from `fd` at `offset` (pread loop). */
export function readFd(fd: number, offset: number, max: number): Buffer {
  const chunks: Buffer[] = [];
  let pos = offset;
  let left = max;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(left, 64 * 1024));
    const got = readSync(fd, buf, 0, buf.length, pos);
    if (got <= 0) break;
    chunks.push(buf.subarray(0, got));
    pos += got;
    left -= got;
  }
  return Buffer.concat(chunks);
}

/** Read a regular file inside a root handle (`/proc/PID/root`), every component without following links. */
export function readInRoot(rootFd: number, path: string, maxBytes: number): Buffer | null {
  const parts = path.split('/').filter(Boolean);
  const file = parts.pop();
  if (!file) return null;
  let dirfd: number;
  try {
    dirfd = openDirBeneath(rootFd, parts.join('/'));
  } catch (e) {
    if (e instanceof FsatError && (e.code === 'ENOENT' || e.code === 'ELOOP' || e.code === 'ENOTDIR'))
      return null;
    throw e;
  }
  try {
    return readRegularAt(dirfd, file, maxBytes);
  } finally {
    closeSync(dirfd);
  }
}
