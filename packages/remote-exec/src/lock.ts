import { closeSync, fstatSync } from 'node:fs';
import { FsatError, O, lstatAt, mkdirAt, openAt, openTrusted, tryLock, unlinkAt } from './fsat';

/**
 * One run per target process at a time, across processes: an flock on `<lockDir>/<pid>-<starttime>.lock`.
 * The agent and every `pyreach-exec` on the host use the same directory, so they exclude each other. Per
 * process, not per thread: several threads of one process are armed by one run.
 *
 * The lock directory must be the engine's own (owner root or the engine's uid, not writable by group or
 * others, every directory above it likewise or sticky): another user who could write there could replace a
 * lock file, or make the engine create files where it chooses. It is created (0700) when missing, each
 * component opened with O_NOFOLLOW.
 */
export const DEFAULT_LOCK_DIR = '/run/pyreach/locks';

export class LockError extends Error {}

function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === (process.geteuid?.() ?? 0);
}

/** Open (creating the last missing components) a directory only the engine's uid can write. */
export function openPrivateDir(path: string): number {
  if (!path.startsWith('/'))
    throw new LockError(`the lock directory must be absolute, got ${JSON.stringify(path)}`);
  const parts = path.split('/').filter(Boolean);
  // "/" itself is the one absolute open: no user can replace it.
  let fd = openTrusted('/', O.RDONLY | O.DIRECTORY);
  let at = '';
  try {
    for (let i = 0; i <= parts.length; i++) {
      const st = fstatSync(fd);
      const last = i === parts.length;
      const writableByOthers = (st.mode & 0o022) !== 0;
      const sticky = (st.mode & 0o1000) !== 0;
      if (!trustedOwner(st.uid) || (writableByOthers && (last || !sticky)))
        throw new LockError(
          `the lock directory ${path} is not safe: ${at || '/'} is owned by uid ${st.uid} with mode ${(st.mode & 0o7777).toString(8)} (it must belong to root or the engine's uid and not be writable by others)`,
        );
      if (last) break;
      const name = parts[i]!;
      let next: number;
      try {
        next = openAt(fd, name, O.RDONLY | O.DIRECTORY);
      } catch (e) {
        if (!(e instanceof FsatError) || e.code !== 'ENOENT') throw e;
        try {
          mkdirAt(fd, name, 0o700);
        } catch (e2) {
          if (!(e2 instanceof FsatError) || e2.code !== 'EEXIST') throw e2;
        }
        next = openAt(fd, name, O.RDONLY | O.DIRECTORY);
      }
      closeSync(fd);
      fd = next;
      at += '/' + name;
    }
    return fd;
  } catch (e) {
    closeSync(fd);
    if (e instanceof LockError) throw e;
    throw new LockError(`cannot use the lock directory ${path}: ${(e as Error).message}`);
  }
}

export interface TargetLock {
  /** Release: remove the lock file (while still holding it), then close. */
  release(): void;
}

export interface LockOptions {
  lockDir: string;
  pid: number;
  startTime: string;
  /** How long to wait for another run to finish (0: refuse at once). */
  waitMs: number;
  signal?: AbortSignal;
}

export type LockOutcome =
  | { ok: true; lock: TargetLock; waitedMs: number }
  | { ok: false; reason: 'busy'; holder: string; waitedMs: number }
  | { ok: false; reason: 'aborted'; waitedMs: number };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function lockTarget(opts: LockOptions): Promise<LockOutcome> {
  const dirFd = openPrivateDir(opts.lockDir);
  const name = `${opts.pid}-${opts.startTime}.lock`;
  const started = Date.now();
  const holder = 'the agent or another pyreach-exec';
  try {
    for (;;) {
      const fd = openAt(dirFd, name, O.RDWR | O.CREAT | O.NONBLOCK, 0o600);
      let keep = false;
      try {
        const st = fstatSync(fd);
        if (!st.isFile() || st.nlink !== 1 || !trustedOwner(st.uid))
          throw new LockError(
            `lock file ${opts.lockDir}/${name} is not the engine's (${st.uid}, ${st.nlink} links)`,
          );
        if (tryLock(fd)) {
          // The holder before us may have removed the file after we opened it: only the file that is still
          // under that name counts.
          const now = lstatAt(dirFd, name);
          if (now && now.ino === st.ino && now.dev === st.dev) {
            // Nothing is written into the file: freeing an unlinked file's data at close costs milliseconds on
            // a disk-backed /run, and the holder is named by the lock's owner in its own logs anyway.
            keep = true;
            const lockFd = fd;
            const dir = dirFd;
            return {
              ok: true,
              waitedMs: Date.now() - started,
              lock: {
                release() {
                  try {
                    const cur = lstatAt(dir, name);
                    if (cur && cur.ino === st.ino) unlinkAt(dir, name);
                  } catch {
                    /* already gone */
                  }
                  closeSync(lockFd);
                  closeSync(dir);
                },
              },
            };
          }
        }
      } finally {
        if (!keep) closeSync(fd);
      }
      const waited = Date.now() - started;
      if (opts.signal?.aborted) {
        closeSync(dirFd);
        return { ok: false, reason: 'aborted', waitedMs: waited };
      }
      if (waited >= opts.waitMs) {
        closeSync(dirFd);
        return { ok: false, reason: 'busy', holder, waitedMs: waited };
      }
      await sleep(Math.min(25, Math.max(1, opts.waitMs - waited)));
    }
  } catch (e) {
    try {
      closeSync(dirFd);
    } catch {
      /* closed */
    }
    throw e;
  }
}
