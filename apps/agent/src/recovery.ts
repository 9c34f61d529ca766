/**
 * What is true about a job that was running when the agent died? The engine stages each run in a private,
 * root-owned directory inside the target's root, with the run id this agent gave it (runIdOf(jobId)) in its
 * root-owned job.json; the harness fills picked.json, out.txt and result.json. The agent finds that run again
 * with the engine's own findStagedRuns() and reads it with the engine's own checks: finished (report what the
 * harness wrote, or STAGING_TAMPERED when the outputs are not what the engine made), picked up and still
 * running (wait for it), or never picked up (remove the harness so the pending request can never run it, and
 * say so). Directories of the legacy layout (an engine before run ids: found by the job's code and params
 * hashes) are still read, safely. Anything else is reported as unknown. A job is never run again.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmdirSync,
  unlinkSync,
} from 'node:fs';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { ExecResult } from '@pyreach/protocol/exec';
import { encodeBytes } from '@pyreach/protocol/text';
import {
  findStagedRuns,
  parseHarnessReport,
  resultFromReport,
  type HarnessReport,
  type StagedRun,
} from '@pyreach/remote-exec';
import type { JobRecord } from './outbox';
import { readTargetFacts } from './procinfo';

const STAGING_BASES = ['/tmp', '/var/tmp', '/dev/shm'];
const STAGING_NAME = /^pyreach-[0-9a-f]{16}$/;
/** Largest file recovery reads from a staging directory (out.txt is capped by the harness at 1 MiB). */
const OUTPUT_CAP = 1024 * 1024;
const SMALL_CAP = 4 * 1024 * 1024;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/**
 * The engine run id of a job (RunOptions.runId): derived from the job id, so a restarted agent finds the run
 * of a job from its journal alone. 32 lowercase hex digits.
 */
export function runIdOf(jobId: string): string {
  return sha256(`pyreach-job:${jobId}`).slice(0, 32);
}

/*
 * Everything below a target's root is space the target's user may write (a container's root, a process that
 * owns its staging directory). The agent is root there, so it never follows a link: each directory is opened
 * with O_NOFOLLOW and everything inside it is reached through /proc/self/fd/<dirfd>/<name> — the kernel
 * resolves that from the opened directory itself (like openat), so a component swapped for a link after the
 * open cannot redirect it — and files are opened O_NOFOLLOW|O_NONBLOCK, checked with fstat (a regular file
 * with one link: no FIFO that blocks, no device, no hard link to a file elsewhere) and read with a size cap.
 */
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
// (Node opens every descriptor close-on-exec already.)
const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const at = (dirFd: number, name: string): string => `/proc/self/fd/${dirFd}/${name}`;

class Dir {
  private constructor(readonly fd: number) {}

  /** Open a directory without following a link in its last component (the caller vouches for the rest). */
  static open(path: string): Dir | null {
    try {
      return new Dir(openSync(path, DIR_FLAGS));
    } catch {
      return null;
    }
  }

  /**
   * The target's root, `/proc/PID/root`: a kernel magic link (to the root the target sees), so it is opened
   * following that one link; everything below it is opened with O_NOFOLLOW.
   */
  static openRoot(path: string): Dir | null {
    try {
      return new Dir(openSync(path, constants.O_RDONLY | constants.O_DIRECTORY));
    } catch {
      return null;
    }
  }

  sub(name: string): Dir | null {
    return Dir.open(at(this.fd, name));
  }

  names(): string[] {
    try {
      return readdirSync(`/proc/self/fd/${this.fd}`);
    } catch {
      return [];
    }
  }

  /** Type of an entry without following it. */
  kind(name: string): 'file' | 'dir' | 'other' | null {
    try {
      const st = lstatSync(at(this.fd, name));
      return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
    } catch {
      return null;
    }
  }

  /** Bytes of a regular, singly linked file, at most `cap` of them; null if absent or anything else. */
  read(name: string, cap: number): Buffer | null {
    let fd: number;
    try {
      fd = openSync(at(this.fd, name), FILE_FLAGS);
    } catch {
      return null;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.nlink !== 1) return null;
      const buf = Buffer.alloc(Math.min(st.size, cap));
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      return buf.subarray(0, off);
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }

  /** Remove an entry and, for a directory, what is in it — never following a link (links are unlinked). */
  remove(name: string, depth = 0): void {
    const kind = this.kind(name);
    if (kind === null) return;
    if (kind === 'dir' && depth < 4) {
      const sub = this.sub(name);
      if (sub) {
        for (const n of sub.names()) sub.remove(n, depth + 1);
        sub.close();
      }
      try {
        rmdirSync(at(this.fd, name));
      } catch {
        /* not empty (something was added meanwhile) or already gone: left as it is */
      }
      return;
    }
    try {
      unlinkSync(at(this.fd, name));
    } catch {
      /* already gone */
    }
  }

  rename(from: string, to: string): void {
    renameSync(at(this.fd, from), at(this.fd, to));
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

export interface RecoveryOptions {
  procRoot?: string;
  /** Cap for how long to wait for a harness that was picked up but has not reported yet. */
  maxWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const RESTART = 'the agent restarted while this job was in progress';
const NOTE = `${RESTART}; this outcome was read from the harness's own report in the target (the job was not run again)`;

function unknown(detail: string): ExecResult {
  return {
    status: 'failed',
    errorCode: 'HARNESS_ERROR',
    message: `${RESTART}; outcome unknown: ${detail}. The job was not run again.`.slice(0, 4096),
    output: '',
  };
}

/** A staging directory found in the target's root: its parent (opened) and its name there. */
interface Found {
  base: Dir;
  name: string;
  dir: Dir;
  /** For messages only: the path as it was found. */
  path: string;
}

/** Staging directories in the target's root holding exactly this job's code and params. */
function findStaging(record: JobRecord, procRoot: string): Found[] {
  const found: Found[] = [];
  const root = Dir.openRoot(`${procRoot}/${record.target.pid}/root`);
  if (!root) return found;
  try {
    for (const base of STAGING_BASES) {
      // /tmp, /var/tmp, /dev/shm of the target, one component at a time: a link in the target's root
      // (an absolute one would resolve on the host) is never followed.
      let dir: Dir | null = root;
      for (const part of base.split('/').filter(Boolean)) {
        const next: Dir | null = dir.sub(part);
        if (dir !== root) dir.close();
        dir = next;
        if (!dir) break;
      }
      if (!dir || dir === root) continue;
      let kept = false;
      for (const n of dir.names().filter((x) => STAGING_NAME.test(x))) {
        const st = dir.sub(n);
        if (!st) continue;
        const code = st.read('code.py', SMALL_CAP);
        let match = code !== null && record.codeHash !== null && sha256(code) === record.codeHash;
        if (match && record.paramsHash !== undefined) {
          const raw = st.read('params.json', SMALL_CAP);
          try {
            match =
              raw !== null && sha256(canonicalJson(JSON.parse(raw.toString('utf8')))) === record.paramsHash;
          } catch {
            match = false;
          }
        }
        if (match) {
          found.push({ base: dir, name: n, dir: st, path: `${base}/${n}` });
          kept = true;
        } else st.close();
      }
      if (!kept) dir.close();
    }
  } finally {
    root.close();
  }
  return found;
}

/** For tests and tools: the paths (inside the target's root) of this job's staging directories. */
export function findStagingDirs(record: JobRecord, procRoot = '/proc'): string[] {
  const found = findStaging(record, procRoot);
  const paths = found.map((f) => f.path);
  closeAll(found);
  return paths;
}

function closeAll(found: Found[]): void {
  const bases = new Set(found.map((f) => f.base));
  for (const f of found) f.dir.close();
  for (const b of bases) b.close();
}

/**
 * The harness's own report, read with the engine's interpretation; a note says it came from recovery. The
 * output is what the target wrote, so it becomes safe text byte for byte (encodeBytes), as the engine does.
 */
function fromReport(f: Found, report: HarnessReport): ExecResult {
  const raw = f.dir.read('out.txt', OUTPUT_CAP);
  const output = raw ? encodeBytes(raw) : '';
  const r = resultFromReport(report, output);
  const parsed = ExecResult.safeParse({
    ...r,
    message: r.message ? `${r.message} (${NOTE})`.slice(0, 4096) : NOTE,
  });
  return parsed.success ? parsed.data : unknown('the harness report could not be read');
}

function readReport(f: Found): HarnessReport | null {
  const raw = f.dir.read('result.json', SMALL_CAP);
  if (!raw) return null;
  try {
    return parseHarnessReport(raw);
  } catch {
    return null;
  }
}

/**
 * Picked up, in the legacy layout: the harness wrote its marker completely. An empty picked.json is not a
 * pickup (the engine pre-creates it empty); a partial one is not either (the harness writes it in one go,
 * newline-terminated; an older one wrote one JSON object).
 */
function pickedUp(f: Found): boolean {
  const raw = f.dir.read('picked.json', 64 * 1024);
  if (!raw || raw.length === 0) return false;
  if (raw[raw.length - 1] === 0x0a) return true;
  try {
    const v: unknown = JSON.parse(raw.toString('utf8'));
    return typeof v === 'object' && v !== null;
  } catch {
    return false;
  }
}

function removeStaging(f: Found): void {
  f.base.remove(f.name);
}

/** Decide the honest final result of one interrupted job. */
export async function recoverJob(record: JobRecord, opts: RecoveryOptions = {}): Promise<ExecResult> {
  const procRoot = opts.procRoot ?? '/proc';
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const facts = readTargetFacts(record.target.pid, procRoot);
  if (!facts || facts.startTime !== record.target.startTime) {
    return unknown(
      `target process ${record.target.pid} has exited since, so its staging directory cannot be inspected`,
    );
  }
  const staged = await stagedRunOf(record, procRoot);
  if (staged) {
    try {
      return await recoverStaged(staged, record, procRoot, opts, sleep);
    } finally {
      staged.close();
    }
  }
  return recoverLegacy(record, procRoot, opts, sleep);
}

/** The engine's outcome of a recovered run, with a note that it came from recovery; staging is removed. */
function reportStaged(run: StagedRun, r: ExecResult): ExecResult {
  const problems = run.remove();
  const note =
    r.errorCode === 'STAGING_TAMPERED'
      ? `${RESTART}; found when the agent read the staging back after its restart (the job was not run again)`
      : NOTE;
  const message = r.message ? `${r.message} (${note})` : note;
  if (problems.length && r.errorCode !== 'STAGING_TAMPERED')
    return {
      status: 'failed',
      errorCode: 'STAGING_TAMPERED',
      message: `staging was tampered with: ${problems.join('; ')} (${NOTE})`.slice(0, 4096),
      output: '',
    };
  const parsed = ExecResult.safeParse({ ...r, message: message.slice(0, 4096) });
  return parsed.success ? parsed.data : unknown('the harness report could not be read');
}

/** This job's run in the engine's layout (found by its run id), if the target still has it. */
async function stagedRunOf(record: JobRecord, procRoot: string): Promise<StagedRun | null> {
  let runs: StagedRun[];
  try {
    runs = await findStagedRuns({ pid: record.target.pid, startTime: record.target.startTime, procRoot });
  } catch {
    return null;
  }
  const id = runIdOf(record.jobId);
  let mine: StagedRun | null = null;
  for (const r of runs) {
    if (!mine && r.runId === id) mine = r;
    else r.close();
  }
  return mine;
}

async function recoverStaged(
  run: StagedRun,
  record: JobRecord,
  procRoot: string,
  opts: RecoveryOptions,
  sleep: (ms: number) => Promise<void>,
): Promise<ExecResult> {
  if (record.codeHash !== null && sha256(run.code) !== record.codeHash) {
    // The run id and job.json are root's; code.py is the target's own copy (0400, its to change).
    return unknown(
      `the staged code in ${run.dirInTarget} no longer matches the job's code hash (changed in the target)`,
    );
  }
  const done = run.outcome();
  if (done) return reportStaged(run, done);
  if (!run.pickedUp()) {
    // Staged, not picked up: the request may still sit in the target's thread state. Remove the harness so the
    // target can never run it; if the harness announced itself meanwhile, it runs: wait for it below.
    if (run.withdraw()) {
      const problems = run.remove();
      return {
        status: 'pickup_timeout',
        errorCode: 'PICKUP_TIMEOUT',
        message:
          `${RESTART} before the target picked the job up; the staged script was removed so it can never run. Nothing ran; submit it again if still needed.${problems.length ? ` (Removing the staging directory found: ${problems.join('; ')})` : ''}`.slice(
            0,
            4096,
          ),
        output: '',
      };
    }
  }
  // Running inside the target right now: wait for its report, within its budget (plus a margin).
  const waitMs = Math.min(opts.maxWaitMs ?? 120_000, record.budgetSeconds * 1000 + 10_000);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    const r = run.outcome();
    if (r) return reportStaged(run, r);
    if (readTargetFacts(record.target.pid, procRoot)?.startTime !== record.target.startTime)
      return unknown('the target picked the job up and then exited before reporting');
    await sleep(100);
  }
  return unknown(
    `the target picked the job up but had not reported after ${Math.round(waitMs / 1000)} s; the code may still be running in process ${record.target.pid}`,
  );
}

/** The legacy layout (no run id): this job's directory found by its code and params hashes. */
async function recoverLegacy(
  record: JobRecord,
  procRoot: string,
  opts: RecoveryOptions,
  sleep: (ms: number) => Promise<void>,
): Promise<ExecResult> {
  const dirs = findStaging(record, procRoot);
  try {
    if (dirs.length === 0) {
      return unknown(
        'no staging directory of this job is left in the target (it was never staged, or it finished and was cleaned up before the outcome was recorded)',
      );
    }
    if (dirs.length > 1) {
      return unknown(
        `${dirs.length} staging directories with identical code and parameters were found in the target, so this job's cannot be told apart`,
      );
    }
    const f = dirs[0]!;
    const done = readReport(f);
    if (done) {
      const r = fromReport(f, done);
      removeStaging(f);
      return r;
    }
    if (pickedUp(f)) {
      // Running inside the target right now: wait for its report, within its budget (plus a margin).
      const waitMs = Math.min(opts.maxWaitMs ?? 120_000, record.budgetSeconds * 1000 + 10_000);
      const deadline = Date.now() + waitMs;
      while (Date.now() < deadline) {
        const r = readReport(f);
        if (r) {
          const res = fromReport(f, r);
          removeStaging(f);
          return res;
        }
        if (readTargetFacts(record.target.pid, procRoot)?.startTime !== record.target.startTime) {
          return unknown('the target picked the job up and then exited before reporting');
        }
        await sleep(100);
      }
      return unknown(
        `the target picked the job up but had not reported after ${Math.round(waitMs / 1000)} s; the code may still be running in process ${record.target.pid}`,
      );
    }
    // Staged, not picked up: the request may still sit in the target's thread state. Move the directory away
    // (atomic, within its opened parent) so the target can never open run.py, then check it did not pick up
    // in the meantime.
    const tomb = `${f.name}.abandoned`;
    try {
      f.base.rename(f.name, tomb);
    } catch (e) {
      return unknown(`the staged job could not be withdrawn (${(e as Error).message})`);
    }
    const raced = pickedUp(f);
    f.base.remove(tomb);
    if (raced) return unknown('the target picked the job up while the agent was withdrawing it');
    return {
      status: 'pickup_timeout',
      errorCode: 'PICKUP_TIMEOUT',
      message: `${RESTART} before the target picked the job up; the staged script was removed so it can never run. Nothing ran; submit it again if still needed.`,
      output: '',
    };
  } finally {
    closeAll(dirs);
  }
}
