import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fstatSync, writeSync, type Stats } from 'node:fs';
import {
  FsatError,
  O,
  kindOf,
  lstatAt,
  mkdirAt,
  openAt,
  openDirBeneath,
  openTrusted,
  readFd,
  unlinkAt,
} from './fsat';
import { procPath } from './procfs';

/**
 * Staging that the target's user cannot subvert.
 *
 * Layout, inside the target's root (reached through a handle on `/proc/PID/root`, every component below it
 * opened with O_NOFOLLOW, so a link planted in a container never resolves on the host):
 *
 *   <base>/pyreach-<16 hex>/   root-owned, 0711 (0700 while being filled): the target may look names up
 *                              in it but never create, rename or remove anything there
 *     run.py code.py params.json   the harness and the inputs: the target's, 0400 (only it and root read them;
 *                                  what it does to them changes only what its own process runs)
 *     job.json                     settings, root-owned 0644
 *     ctl                          root-owned 0644: the engine writes "cancel" into it through its descriptor
 *     claim.txt picked.json out.txt result.json   pre-created by the engine (O_EXCL), then handed to the target's uid,
 *                                        0600: the target may write their contents, never replace them
 *
 * The engine keeps a descriptor on every file it made and reads outputs only through them (size-capped), so
 * nothing is ever re-opened by path once the target can act. On every read it checks the descriptor (regular
 * file, one link, the target's owner, within its cap) and, at milestones, that the directory entry still is the
 * directory it made; anything else throws TamperError. Removal is unlinkat() of the names it made, then of the
 * directory if it is still ours: never recursive, never through a link.
 */
export interface Staging {
  /** The directory as the target sees it. */
  dirInTarget: string;
  /** The harness path written into the target (as the target sees it). */
  scriptInTarget: string;
  /** The pickup marker once complete (the harness writes it once, newline-terminated), else null. */
  readPicked(): Buffer | null;
  /** Bytes of out.txt from `offset` (at most `max`). */
  readOutput(offset: number, max: number): Buffer;
  /** The final report once complete, else null. */
  readResult(): Buffer | null;
  /** Ask the harness to stop the code (written through the engine's own descriptor on `ctl`). */
  requestCancel(): void;
  /** Throws TamperError when the staging directory is no longer the one made, or a file was hard-linked. */
  check(): void;
  /** Remove what was made; returns what could not be removed (never throws). */
  cleanup(): string[];
}

export const DEFAULT_BASE_DIRS = ['/tmp', '/var/tmp', '/dev/shm'];
export const SCRIPT_NAME = 'run.py';
/** Outputs the target writes, pre-created by the engine. */
export const OUTPUT_FILES = ['claim.txt', 'picked.json', 'out.txt', 'result.json'] as const;
type OutputName = (typeof OUTPUT_FILES)[number];

/** Limits of what the engine ever reads from the target's files (beyond them: tampering). */
export const READ_CAPS = {
  picked: 64 * 1024,
  /** The harness caps the result's JSON at 8 MiB and error texts at 320 KiB. */
  result: 9 * 1024 * 1024,
  /** The output cap plus room for the truncation marker. */
  outputSlack: 4096,
} as const;

export class StagingError extends Error {
  constructor(
    readonly code: 'PATH_TOO_LONG' | 'STAGING_FAILED' | 'STAGING_TAMPERED',
    message: string,
  ) {
    super(message);
  }
}

/** Something in staging is not what the engine made. `message` says what was found. */
export class TamperError extends Error {}

export function newDirName(): string {
  return `pyreach-${randomBytes(8).toString('hex')}`;
}

/** Length (in bytes) the harness path will have inside the target. */
export function plannedScriptPath(baseInTarget: string, dirName: string): string {
  return `${baseInTarget.replace(/\/+$/, '')}/${dirName}/${SCRIPT_NAME}`;
}

export interface StageOptions {
  procRoot: string;
  pid: number;
  uid: number;
  gid: number;
  /** Input files, handed to the target's uid read-only (0400). */
  inputs: Record<string, string | Buffer>;
  /** Root-owned, world-readable settings (job.json). */
  settings: Record<string, string | Buffer>;
  /** Harness source once the directory name is known. */
  harness: (dirInTarget: string) => string;
  /** Directories (inside the target) to try, in order. */
  baseDirs?: string[];
  /** Max bytes of the script path, excluding the NUL (the target's buffer size minus one). */
  maxPathBytes: number;
  /** Output cap in bytes (out.txt may not grow past it plus the marker). */
  outputCapBytes: number;
  /** Called right after /proc/PID/root is opened: throws if the pid no longer is the target. */
  verifyTarget?: () => void;
}

function describe(st: Stats): string {
  return `a ${kindOf(st)} owned by uid ${st.uid} with ${st.nlink} link(s), mode ${(st.mode & 0o7777).toString(8)}`;
}

function writeAll(fd: number, data: string | Buffer): void {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

export function stage(opts: StageOptions): Staging {
  const bases = opts.baseDirs ?? DEFAULT_BASE_DIRS;
  const dirName = newDirName();
  const fitting = bases.filter((b) => Buffer.byteLength(plannedScriptPath(b, dirName)) <= opts.maxPathBytes);
  if (fitting.length === 0) {
    const shortest =
      bases.map((b) => plannedScriptPath(b, dirName)).sort((a, b) => a.length - b.length)[0] ?? '';
    throw new StagingError(
      'PATH_TOO_LONG',
      `script path ${JSON.stringify(shortest)} is ${Buffer.byteLength(shortest)} bytes; the target accepts at most ${opts.maxPathBytes}: choose a shorter staging directory`,
    );
  }
  const euid = process.geteuid?.() ?? 0;
  const handOver = euid === 0 && opts.uid !== 0;
  const fds: number[] = [];
  const close = (fd: number | null): void => {
    if (fd === null) return;
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
  };

  // The target's root, as the kernel's magic link gives it (the one link we mean to follow).
  let rootFd: number;
  try {
    rootFd = openTrusted(procPath(opts.procRoot, opts.pid, 'root'), O.RDONLY | O.DIRECTORY);
  } catch (e) {
    throw new StagingError('STAGING_FAILED', `cannot open the target's root: ${(e as Error).message}`);
  }
  let baseFd: number | null = null;
  let base = '';
  const skipped: string[] = [];
  try {
    opts.verifyTarget?.();
    for (const b of fitting) {
      try {
        const fd = openDirBeneath(rootFd, b);
        baseFd = fd;
        base = b;
        break;
      } catch (e) {
        skipped.push(
          `${b} (${e instanceof FsatError && (e.code === 'ENOTDIR' || e.code === 'ELOOP') ? 'a symbolic link or not a directory on the way' : (e as Error).message})`,
        );
      }
    }
  } finally {
    close(rootFd);
  }
  if (baseFd === null)
    throw new StagingError(
      'STAGING_FAILED',
      `no usable staging directory in the target's root: ${skipped.join('; ')} — each must be a real directory, no link on the way`,
    );

  const dirInTarget = `${base.replace(/\/+$/, '')}/${dirName}`;
  let dirFd: number | null = null;
  let dirSt: Stats | null = null;
  const made: string[] = [];
  const outputs = new Map<OutputName, number>();
  let ctlFd: number | null = null;
  const fail = (code: StagingError['code'], msg: string): never => {
    cleanupNow();
    throw new StagingError(code, msg);
  };
  const cleanupNow = (): string[] => {
    const problems: string[] = [];
    if (dirFd !== null) {
      // Only the engine can change entries of its root-owned directory: the names it made are its files.
      for (const name of made) {
        try {
          unlinkAt(dirFd, name);
        } catch (e) {
          problems.push(`${name}: ${(e as Error).message}`);
        }
      }
    }
    for (const fd of fds) close(fd);
    fds.length = 0;
    if (dirFd !== null && baseFd !== null && dirSt !== null) {
      try {
        const now = lstatAt(baseFd, dirName);
        if (now && now.isDirectory() && now.ino === dirSt.ino && now.dev === dirSt.dev)
          unlinkAt(baseFd, dirName, true);
        else if (now)
          problems.push(
            `${dirInTarget} was replaced (now ${describe(now)}); the engine's directory was moved away and is left, empty`,
          );
        else problems.push(`${dirInTarget} was moved away; it is left, empty, wherever it was moved to`);
      } catch (e) {
        problems.push(`${dirInTarget}: ${(e as Error).message}`);
      }
    }
    close(dirFd);
    dirFd = null;
    close(baseFd);
    baseFd = null;
    return problems;
  };

  try {
    mkdirAt(baseFd, dirName, 0o700);
  } catch (e) {
    fail('STAGING_FAILED', `cannot create ${dirInTarget} in the target's root: ${(e as Error).message}`);
  }
  try {
    dirFd = openAt(baseFd, dirName, O.RDONLY | O.DIRECTORY);
    dirSt = fstatSync(dirFd);
  } catch (e) {
    fail(
      'STAGING_TAMPERED',
      `${dirInTarget} was replaced right after the engine created it: ${(e as Error).message}`,
    );
  }
  if (dirSt!.uid !== euid || !dirSt!.isDirectory())
    fail('STAGING_TAMPERED', `${dirInTarget} is not the directory the engine created: ${describe(dirSt!)}`);

  const create = (name: string, mode: number): number => {
    const fd = openAt(dirFd!, name, O.RDWR | O.CREAT | O.EXCL, mode);
    fds.push(fd);
    made.push(name);
    // The umask may have taken the bits others need to read; the owner's bits it cannot take in practice.
    if (mode & 0o044) fchmodSync(fd, mode);
    return fd;
  };
  try {
    for (const [name, data] of Object.entries(opts.settings)) {
      const fd = create(name, 0o644);
      writeAll(fd, data);
    }
    const inputs: [string, string | Buffer][] = [
      ...Object.entries(opts.inputs),
      [SCRIPT_NAME, opts.harness(dirInTarget)],
    ];
    for (const [name, data] of inputs) {
      const fd = create(name, 0o400);
      writeAll(fd, data);
      if (handOver) fchownSync(fd, opts.uid, opts.gid);
    }
    ctlFd = create('ctl', 0o644);
    for (const name of OUTPUT_FILES) {
      const fd = create(name, 0o600);
      if (handOver) fchownSync(fd, opts.uid, opts.gid);
      outputs.set(name, fd);
    }
    // Only now may the target look names up in the directory.
    fchmodSync(dirFd!, 0o711);
  } catch (e) {
    fail('STAGING_FAILED', `cannot stage files in ${dirInTarget}: ${(e as Error).message}`);
  }

  const expectedOwner = handOver ? opts.uid : euid;
  const checkOutput = (name: OutputName, cap: number): number => {
    const fd = outputs.get(name)!;
    const st = fstatSync(fd);
    if (st.nlink !== 1)
      throw new TamperError(`${dirInTarget}/${name} was hard-linked elsewhere (${st.nlink} links)`);
    if (st.uid !== expectedOwner)
      throw new TamperError(`${dirInTarget}/${name} changed owner to uid ${st.uid}`);
    if (st.size > cap)
      throw new TamperError(
        `${dirInTarget}/${name} grew to ${st.size} bytes, past the ${cap} bytes the harness may write`,
      );
    return st.size;
  };
  const complete = (name: OutputName, cap: number): Buffer | null => {
    const size = checkOutput(name, cap);
    if (size === 0) return null;
    const data = readFd(outputs.get(name)!, 0, cap);
    // Written once, in one piece, newline-terminated: anything shorter is still being written.
    return data.length > 0 && data[data.length - 1] === 0x0a ? data : null;
  };
  const outCap = opts.outputCapBytes + READ_CAPS.outputSlack;
  let cleaned: string[] | null = null;

  return {
    dirInTarget,
    scriptInTarget: `${dirInTarget}/${SCRIPT_NAME}`,
    readPicked: () => complete('picked.json', READ_CAPS.picked),
    readResult: () => complete('result.json', READ_CAPS.result),
    readOutput(offset, max) {
      const size = checkOutput('out.txt', outCap);
      if (size <= offset) return Buffer.alloc(0);
      return readFd(outputs.get('out.txt')!, offset, Math.min(max, outCap - offset));
    },
    requestCancel() {
      if (ctlFd !== null) writeSync(ctlFd, 'cancel\n', 0);
    },
    check() {
      if (baseFd === null || dirSt === null) return;
      const now = lstatAt(baseFd, dirName);
      if (!now) throw new TamperError(`${dirInTarget} was moved away while the run went on`);
      if (!now.isDirectory() || now.ino !== dirSt.ino || now.dev !== dirSt.dev)
        throw new TamperError(
          `${dirInTarget} was replaced while the run went on: it is now ${describe(now)}`,
        );
      for (const name of OUTPUT_FILES) checkOutput(name, name === 'out.txt' ? outCap : READ_CAPS.result);
    },
    cleanup() {
      cleaned ??= cleanupNow();
      return cleaned;
    },
  };
}
