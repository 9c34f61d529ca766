import { randomBytes } from 'node:crypto';
import {
  chownSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { procPath } from './procfs';

/**
 * A private directory inside the target's root filesystem, reached through /proc/PID/root so that
 * container and chroot targets see it at `dirInTarget`. Owned by the target's uid, mode 0700; removed by
 * `cleanup()` whichever way the run ends.
 */
export interface Staging {
  /** The directory as the target sees it. */
  dirInTarget: string;
  /** The harness path written into the target (as the target sees it). */
  scriptInTarget: string;
  read(name: string): Buffer | null;
  /** Read `name` from byte `offset`; returns the bytes read (possibly empty). */
  readFrom(name: string, offset: number): Buffer;
  exists(name: string): boolean;
  write(name: string, data: string | Buffer): void;
  cleanup(): void;
}

export const DEFAULT_BASE_DIRS = ['/tmp', '/var/tmp', '/dev/shm'];
export const SCRIPT_NAME = 'run.py';

export class StagingError extends Error {
  constructor(
    readonly code: 'PATH_TOO_LONG' | 'STAGING_FAILED',
    message: string,
  ) {
    super(message);
  }
}

export function newDirName(): string {
  return `pyreach-${randomBytes(8).toString('hex')}`;
}

/** Length (in bytes) the harness path will have inside the target. */
export function plannedScriptPath(baseInTarget: string, dirName: string): string {
  return `${baseInTarget.replace(/\/+$/, '')}/${dirName}/${SCRIPT_NAME}`;
}

/** A base directory whose components are real directories (not symlinks a target could point elsewhere). */
function usableBase(rootPath: string, base: string): boolean {
  let p = rootPath;
  for (const part of base.split('/').filter(Boolean)) {
    p += '/' + part;
    try {
      const st = lstatSync(p);
      if (!st.isDirectory() || st.isSymbolicLink()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

export interface StageOptions {
  procRoot: string;
  pid: number;
  uid: number;
  gid: number;
  files: Record<string, string | Buffer>;
  /** Harness source once the directory name is known. */
  harness: (dirInTarget: string) => string;
  /** Directories (inside the target) to try, in order. */
  baseDirs?: string[];
  /** Max bytes of the script path, excluding the NUL (the target's buffer size minus one). */
  maxPathBytes: number;
}

export function stage(opts: StageOptions): Staging {
  const rootPath = procPath(opts.procRoot, opts.pid, 'root');
  const bases = opts.baseDirs ?? DEFAULT_BASE_DIRS;
  const dirName = newDirName();
  // Refuse before creating anything when even the shortest candidate cannot fit.
  const fitting = bases.filter((b) => Buffer.byteLength(plannedScriptPath(b, dirName)) <= opts.maxPathBytes);
  if (fitting.length === 0) {
    const shortest =
      bases.map((b) => plannedScriptPath(b, dirName)).sort((a, b) => a.length - b.length)[0] ?? '';
    throw new StagingError(
      'PATH_TOO_LONG',
      `script path ${JSON.stringify(shortest)} is ${Buffer.byteLength(shortest)} bytes; the target accepts at most ${opts.maxPathBytes}: choose a shorter staging directory`,
    );
  }
  const base = fitting.find((b) => usableBase(rootPath, b));
  if (!base)
    throw new StagingError(
      'STAGING_FAILED',
      `no usable staging directory in the target's root (tried ${fitting.join(', ')}; each must be a real directory)`,
    );

  const dirInTarget = `${base.replace(/\/+$/, '')}/${dirName}`;
  const procDir = rootPath + dirInTarget;
  try {
    mkdirSync(procDir, { mode: 0o700 });
  } catch (e) {
    throw new StagingError(
      'STAGING_FAILED',
      `cannot create ${dirInTarget} in the target's root: ${(e as Error).message}`,
    );
  }
  // A host-side path to the same directory, used to clean up if /proc/PID/root vanishes with the process.
  let hostDir: string | null = null;
  try {
    const real = realpathSync(procDir);
    const a = statSync(real);
    const b = statSync(procDir);
    if (a.ino === b.ino && a.dev === b.dev) hostDir = real;
  } catch {
    hostDir = null;
  }
  const where = (name: string): string => {
    const viaProc = `${procDir}/${name}`;
    if (existsSync(procDir)) return viaProc;
    return hostDir ? `${hostDir}/${name}` : viaProc;
  };
  const staging: Staging = {
    dirInTarget,
    scriptInTarget: `${dirInTarget}/${SCRIPT_NAME}`,
    read(name) {
      try {
        return readFileSync(where(name));
      } catch {
        return null;
      }
    },
    readFrom(name, offset) {
      let fd: number;
      try {
        fd = openSync(where(name), 'r');
      } catch {
        return Buffer.alloc(0);
      }
      try {
        const chunks: Buffer[] = [];
        let pos = offset;
        for (;;) {
          const buf = Buffer.alloc(64 * 1024);
          const n = readSync(fd, buf, 0, buf.length, pos);
          if (n <= 0) break;
          chunks.push(buf.subarray(0, n));
          pos += n;
          if (pos - offset > 4 * 1024 * 1024) break;
        }
        return Buffer.concat(chunks);
      } finally {
        closeSync(fd);
      }
    },
    exists(name) {
      return existsSync(where(name));
    },
    write(name, data) {
      const p = where(name);
      writeFileSync(p, data, { mode: 0o600 });
      try {
        chownSync(p, opts.uid, opts.gid);
      } catch {
        /* best effort: the engine may already run as the target's uid */
      }
    },
    cleanup() {
      for (const d of [procDir, hostDir]) {
        if (!d) continue;
        try {
          rmSync(d, { recursive: true, force: true });
        } catch {
          /* try the other path */
        }
      }
    },
  };
  try {
    chownSync(procDir, opts.uid, opts.gid);
    for (const [name, data] of Object.entries(opts.files)) staging.write(name, data);
    staging.write(SCRIPT_NAME, opts.harness(dirInTarget));
  } catch (e) {
    staging.cleanup();
    throw new StagingError('STAGING_FAILED', `cannot stage files in ${dirInTarget}: ${(e as Error).message}`);
  }
  return staging;
}
