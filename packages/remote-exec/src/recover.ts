/**
 * Staging directories left in a target by an engine that stopped mid-run (the agent restarted): find them and
 * read them as safely as the run itself does — inside a handle on `/proc/PID/root`, every component with
 * O_NOFOLLOW, regular files only, size-capped, the directory and `job.json` root-owned (so the run id in it is
 * the engine's, not something the target wrote), outputs owned by the target with one link. For the agent's
 * recovery; the decisions (wait for a running job, report, give up) stay the caller's.
 */
import { closeSync, fstatSync, readdirSync, type Stats } from 'node:fs';
import type { ExecResult } from '@pyreach/protocol/exec';
import { encodeBytes } from '@pyreach/protocol/text';
import {
  O,
  kindOf,
  loadFsat,
  lstatAt,
  openAt,
  openDirBeneath,
  openTrusted,
  readRegularAt,
  unlinkAt,
} from './fsat';
import { procPath, readStartTime } from './procfs';
import { parseHarnessReport, resultFromReport } from './report';
import { DEFAULT_BASE_DIRS, OUTPUT_FILES, READ_CAPS, SCRIPT_NAME } from './staging';

export interface StagedRun {
  /** The run id the engine wrote (RunOptions.runId, or a random one). */
  runId: string;
  dirInTarget: string;
  /** The inputs, as staged. */
  code: Buffer;
  params: Buffer;
  /** Picked up (the harness's marker is complete). */
  pickedUp(): boolean;
  /** The run's outcome if the harness reported, else null; STAGING_TAMPERED when the outputs are not sound. */
  outcome(): ExecResult | null;
  /**
   * Make sure a request still pending in the target can never run this: removes the harness (run.py). Returns
   * false when the harness had already picked the request up.
   */
  withdraw(): boolean;
  /** Remove the directory and everything the engine made in it (never through a link); returns problems. */
  remove(): string[];
  close(): void;
}

const RUN_FILES = [SCRIPT_NAME, 'code.py', 'params.json', 'job.json', 'ctl', ...OUTPUT_FILES];
const INPUT_CAP = 64 * 1024 * 1024;

export async function findStagedRuns(opts: {
  pid: number;
  /** The target's start time: nothing is read if the pid now belongs to another process. */
  startTime: string;
  procRoot?: string;
  stagingDirs?: string[];
}): Promise<StagedRun[]> {
  await loadFsat();
  const procRoot = opts.procRoot ?? '/proc';
  const euid = process.geteuid?.() ?? 0;
  let rootFd: number;
  try {
    rootFd = openTrusted(procPath(procRoot, opts.pid, 'root'), O.RDONLY | O.DIRECTORY);
  } catch {
    return [];
  }
  const found: StagedRun[] = [];
  try {
    if (readStartTime(procRoot, opts.pid) !== opts.startTime) return [];
    for (const base of opts.stagingDirs ?? DEFAULT_BASE_DIRS) {
      let baseFd: number;
      try {
        baseFd = openDirBeneath(rootFd, base);
      } catch {
        continue;
      }
      let names: string[] = [];
      try {
        names = readdirSync(`/proc/self/fd/${baseFd}`).filter((n) => /^pyreach-[0-9a-f]{16}$/.test(n));
      } catch {
        names = [];
      }
      for (const name of names) {
        const run = openRun(baseFd, base, name, euid);
        if (run) found.push(run);
      }
      closeSync(baseFd);
    }
  } finally {
    closeSync(rootFd);
  }
  return found;
}

function openRun(baseFd: number, base: string, name: string, euid: number): StagedRun | null {
  let dirFd: number;
  try {
    dirFd = openAt(baseFd, name, O.RDONLY | O.DIRECTORY);
  } catch {
    return null;
  }
  let keep = false;
  // A second descriptor on the base, for removing the directory later.
  let parentFd: number | null = null;
  try {
    const st = fstatSync(dirFd);
    if (st.uid !== euid) return null; // not made by an engine of this uid (or an old layout's)
    const job = readRegularAt(dirFd, 'job.json', 64 * 1024);
    const jst = job ? fstatOf(dirFd, 'job.json') : null;
    if (!job || !jst || jst.uid !== euid) return null;
    const runId = String((JSON.parse(job.toString('utf8')) as { runId?: unknown }).runId ?? '');
    const capBytes = Number((JSON.parse(job.toString('utf8')) as { capBytes?: unknown }).capBytes ?? 1 << 20);
    const code = readRegularAt(dirFd, 'code.py', INPUT_CAP) ?? Buffer.alloc(0);
    const params = readRegularAt(dirFd, 'params.json', INPUT_CAP) ?? Buffer.from('{}');
    parentFd = openDirBeneath(baseFd, '');
    keep = true;
    const dirInTarget = `${base.replace(/\/+$/, '')}/${name}`;
    const outputOk = (n: string, cap: number): Buffer | null => {
      const s = fstatOf(dirFd, n);
      if (!s) return null;
      // Entries of the root-owned directory are the engine's; what the target can do is to hard-link or grow them.
      if (!s.isFile() || s.nlink !== 1)
        throw new Error(`${dirInTarget}/${n} is ${kindOf(s)} with ${s.nlink} link(s) owned by uid ${s.uid}`);
      return readRegularAt(dirFd, n, cap);
    };
    const complete = (b: Buffer | null): Buffer | null =>
      b && b.length && b[b.length - 1] === 0x0a ? b : null;
    let closed = false;
    const run: StagedRun = {
      runId,
      dirInTarget,
      code,
      params,
      pickedUp() {
        try {
          return complete(outputOk('picked.json', READ_CAPS.picked)) !== null;
        } catch {
          return false;
        }
      },
      outcome() {
        try {
          const raw = complete(outputOk('result.json', READ_CAPS.result));
          if (!raw) return null;
          const out = outputOk('out.txt', capBytes + READ_CAPS.outputSlack) ?? Buffer.alloc(0);
          return resultFromReport(parseHarnessReport(raw.toString('latin1')), encodeBytes(out));
        } catch (e) {
          return {
            status: 'failed',
            errorCode: 'STAGING_TAMPERED',
            message: `the staged run's outputs are not what the engine made: ${(e as Error).message}`.slice(
              0,
              4096,
            ),
            output: '',
          };
        }
      },
      withdraw() {
        try {
          unlinkAt(dirFd, SCRIPT_NAME);
        } catch {
          /* already gone */
        }
        return !run.pickedUp();
      },
      remove() {
        const problems: string[] = [];
        for (const n of RUN_FILES) {
          try {
            if (fstatOf(dirFd, n)) unlinkAt(dirFd, n);
          } catch (e) {
            problems.push(`${n}: ${(e as Error).message}`);
          }
        }
        try {
          const now = fstatOf(parentFd!, name);
          if (now && now.ino === st.ino && now.dev === st.dev) unlinkAt(parentFd!, name, true);
          else problems.push(`${dirInTarget} is no longer the engine's directory`);
        } catch (e) {
          problems.push(`${dirInTarget}: ${(e as Error).message}`);
        }
        run.close();
        return problems;
      },
      close() {
        if (closed) return;
        closed = true;
        closeSync(dirFd);
        closeSync(parentFd!);
      },
    };
    return run;
  } catch {
    return null;
  } finally {
    if (!keep) {
      closeSync(dirFd);
      if (parentFd !== null) closeSync(parentFd);
    }
  }
}

function fstatOf(dirFd: number, name: string): Stats | null {
  try {
    return lstatAt(dirFd, name);
  } catch {
    return null;
  }
}
