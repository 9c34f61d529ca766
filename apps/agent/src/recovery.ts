/**
 * What is true about a job that was running when the agent died? The engine stages each run in a private
 * directory inside the target's root (run.py, code.py, params.json, job.json; the harness adds picked.json,
 * out.txt and result.json). If that directory is still there we can tell: finished (report what the harness
 * wrote), picked up and still running (wait for it), or never picked up (remove the script so the pending
 * request can never run it, and say so). Anything else is reported as unknown. A job is never run again.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { ExecResult } from '@pyreach/protocol/exec';
import { parseHarnessReport, resultFromReport, type HarnessReport } from '@pyreach/remote-exec';
import type { JobRecord } from './outbox';
import { readTargetFacts } from './procinfo';

const STAGING_BASES = ['/tmp', '/var/tmp', '/dev/shm'];

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

export interface RecoveryOptions {
  procRoot?: string;
  /** Cap for how long to wait for a harness that was picked up but has not reported yet. */
  maxWaitMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const RESTART = 'the agent restarted while this job was in progress';

function unknown(detail: string): ExecResult {
  return {
    status: 'failed',
    errorCode: 'HARNESS_ERROR',
    message: `${RESTART}; outcome unknown: ${detail}. The job was not run again.`.slice(0, 4096),
    output: '',
  };
}

/** Staging directories in the target's root holding exactly this job's code and params. */
export function findStagingDirs(record: JobRecord, procRoot = '/proc'): string[] {
  const root = `${procRoot}/${record.target.pid}/root`;
  const found: string[] = [];
  for (const base of STAGING_BASES) {
    let names: string[];
    try {
      names = readdirSync(root + base).filter((n) => /^pyreach-[0-9a-f]{16}$/.test(n));
    } catch {
      continue;
    }
    for (const n of names) {
      const dir = `${root}${base}/${n}`;
      try {
        if (sha256(readFileSync(join(dir, 'code.py'))) !== record.codeHash) continue;
        if (record.paramsHash !== undefined) {
          const params = JSON.parse(readFileSync(join(dir, 'params.json'), 'utf8')) as unknown;
          if (sha256(canonicalJson(params)) !== record.paramsHash) continue;
        }
        found.push(dir);
      } catch {
        continue;
      }
    }
  }
  return found;
}

/** The harness's own report, read with the engine's interpretation; a note says it came from recovery. */
function fromReport(dir: string, report: HarnessReport): ExecResult {
  let output = '';
  try {
    output = readFileSync(join(dir, 'out.txt'))
      .subarray(0, 1024 * 1024)
      .toString('utf8');
  } catch {
    output = '';
  }
  const note = `${RESTART}; this outcome was read from the harness's own report in the target (the job was not run again)`;
  const r = resultFromReport(report, output);
  const parsed = ExecResult.safeParse({
    ...r,
    message: r.message ? `${r.message} (${note})`.slice(0, 4096) : note,
  });
  return parsed.success ? parsed.data : unknown('the harness report could not be read');
}

function readJson(path: string): HarnessReport | null {
  try {
    return parseHarnessReport(readFileSync(path));
  } catch {
    return null;
  }
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
  const dirs = findStagingDirs(record, procRoot);
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
  const dir = dirs[0]!;
  const done = readJson(join(dir, 'result.json'));
  if (done) {
    const r = fromReport(dir, done);
    rmSync(dir, { recursive: true, force: true });
    return r;
  }
  if (existsSync(join(dir, 'picked.json'))) {
    // Running inside the target right now: wait for its report, within its budget (plus a margin).
    const waitMs = Math.min(opts.maxWaitMs ?? 120_000, record.budgetSeconds * 1000 + 10_000);
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      const r = readJson(join(dir, 'result.json'));
      if (r) {
        const res = fromReport(dir, r);
        rmSync(dir, { recursive: true, force: true });
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
  // (atomic) so the target can never open run.py, then check it did not pick up in the meantime.
  const tomb = `${dir}.abandoned`;
  try {
    renameSync(dir, tomb);
  } catch (e) {
    return unknown(`the staged job could not be withdrawn (${(e as Error).message})`);
  }
  const raced = existsSync(join(tomb, 'picked.json'));
  rmSync(tomb, { recursive: true, force: true });
  if (raced) return unknown('the target picked the job up while the agent was withdrawing it');
  return {
    status: 'pickup_timeout',
    errorCode: 'PICKUP_TIMEOUT',
    message: `${RESTART} before the target picked the job up; the staged script was removed so it can never run. Nothing ran; submit it again if still needed.`,
    output: '',
  };
}
