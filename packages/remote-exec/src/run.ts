import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { basename, dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { EngineErrorCode, ExecResult } from '@pyreach/protocol/exec';
import { processFacts, hostIdentity } from './discovery';
import type { ProcMem } from './memory';
import { readPending, threadSlot, withdrawRequest, writeRequest, type ThreadSlot } from './native';
import { formatVersion } from './offsets';
import { procPath, readLinkOrNull, readMaps, readNs, readStartTime } from './procfs';
import {
  InspectError,
  locateRuntime,
  openMem,
  permissionMessage,
  readMainInterpreter,
  type RuntimeLocation,
} from './runtime';
import { renderHarness } from './harness';
import { parseHarnessReport, resultFromReport, type HarnessReport } from './report';
import { stage, StagingError, type Staging } from './staging';

export type Backend = 'native' | 'sys';

export interface RunOptions {
  /** Host pid of the target (as seen in the engine's /proc). */
  pid: number;
  /** Start time from discovery: if the pid now belongs to another process, the run ends `target_gone`. */
  expectStartTime?: string;
  /** Native thread id (as the target sees it, i.e. the `tid` discovery lists). Default: the main thread. */
  tid?: number;
  backend?: Backend;
  code: string;
  params?: Record<string, unknown>;
  /** How long the chosen thread may take to reach a safe point. Default 10 s. */
  pickupTimeoutMs?: number;
  /** Time budget of the user's code inside the target. Default 30 s. */
  budgetMs?: number;
  /** Run on the thread that picked the request up instead of a fresh thread. */
  inline?: boolean;
  /** Output cap in bytes (UTF-8). Default 1 MiB. */
  outputCapBytes?: number;
  onOutput?: (chunk: string) => void;
  onState?: (s: 'staged' | 'picked_up') => void;
  signal?: AbortSignal;
  /** Root of the proc filesystem. Default `/proc`. */
  procRoot?: string;
  /** Directories inside the target's root to stage in, in order of preference. */
  stagingDirs?: string[];
}

export const DEFAULTS = {
  pickupTimeoutMs: 10_000,
  budgetMs: 30_000,
  outputCapBytes: 1024 * 1024,
  /** Extra time after the budget for the async exception to land and the harness to report. */
  budgetGraceMs: 5_000,
} as const;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function outcome(
  status: ExecResult['status'],
  errorCode: EngineErrorCode | undefined,
  message: string | undefined,
  extra: Partial<ExecResult> = {},
): ExecResult {
  const r: ExecResult = { status, output: '', ...extra };
  if (errorCode) r.errorCode = errorCode;
  if (message) r.message = message.slice(0, 4096);
  return r;
}

interface Target {
  pid: number;
  nsPid: number;
  uid: number;
  gid: number;
  startTime: string;
  inContainer: boolean;
  mntDiffers: boolean;
  pidDiffers: boolean;
}

class Refusal extends Error {
  constructor(readonly result: ExecResult) {
    super(result.message ?? result.status);
  }
}

function refuse(code: EngineErrorCode, message: string, status: ExecResult['status'] = 'refused'): never {
  throw new Refusal(outcome(status, code, message));
}

function mapInspectError(e: unknown, pid: number): never {
  if (e instanceof Refusal) throw e;
  if (e instanceof InspectError) {
    switch (e.kind) {
      case 'not_python':
        refuse('NOT_PYTHON', `process ${pid} is not a CPython process (no _PyRuntime found in its mappings)`);
      case 'unsupported':
        refuse('UNSUPPORTED_VERSION', e.message);
      case 'permission':
        refuse('PERMISSION_DENIED', e.message);
      case 'gone':
        refuse('TARGET_GONE', e.message, 'target_gone');
      case 'bad_state':
        refuse('INTERNAL', e.message);
    }
  }
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EPERM') refuse('PERMISSION_DENIED', permissionMessage(pid, code));
  if (code === 'ENOENT' || code === 'ESRCH')
    refuse('TARGET_GONE', `process ${pid} no longer exists`, 'target_gone');
  refuse('INTERNAL', `unexpected error inspecting process ${pid}: ${(e as Error)?.message ?? String(e)}`);
}

function resolveTarget(procRoot: string, pid: number, expectStartTime?: string): Target {
  if (!Number.isInteger(pid) || pid <= 0) refuse('NOT_PYTHON', `invalid pid ${pid}`);
  const host = hostIdentity(procRoot);
  const facts = processFacts(procRoot, pid, host);
  if (!facts) refuse('TARGET_GONE', `process ${pid} does not exist`, 'target_gone');
  if (expectStartTime !== undefined && facts.stat.startTime !== expectStartTime)
    refuse(
      'TARGET_GONE',
      `pid ${pid} now belongs to another process (start time ${facts.stat.startTime}, expected ${expectStartTime})`,
      'target_gone',
    );
  if (facts.stat.state === 'Z') refuse('TARGET_GONE', `process ${pid} has exited (zombie)`, 'target_gone');
  const selfMnt = readNs(procRoot, 'self', 'mnt');
  const selfPid = readNs(procRoot, 'self', 'pid');
  return {
    pid,
    nsPid: facts.nsPid,
    uid: facts.status.uid,
    gid: facts.status.gid,
    startTime: facts.stat.startTime,
    inContainer: facts.inContainer,
    mntDiffers: facts.mntNs !== null && facts.mntNs !== selfMnt,
    pidDiffers: facts.pidNs !== null && facts.pidNs !== selfPid,
  };
}

interface Prepared {
  mem: ProcMem;
  loc: RuntimeLocation;
  slot: ThreadSlot;
  tid: number;
}

function prepare(
  procRoot: string,
  t: Target,
  tid: number | undefined,
  writable: boolean,
  backend: Backend,
): Prepared {
  let mem: ProcMem | null = null;
  try {
    mem = openMem(procRoot, t.pid, writable);
    const loc = locateRuntime(procRoot, t.pid, mem);
    const view = readMainInterpreter(mem, loc, t.nsPid);
    if (!view.remoteDebugEnabled)
      refuse(
        'REMOTE_DEBUG_DISABLED',
        `remote debugging is disabled in process ${t.pid} (Python ${formatVersion(loc.offsets.version)}; started with PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug, or built --without-remote-debug): restart it without that to allow remote exec`,
      );
    let tstate: bigint | null;
    let chosenTid: number;
    if (tid === undefined) {
      tstate = view.mainTstate;
      chosenTid = view.threads.find((x) => x.tstate === tstate)?.tid ?? t.nsPid;
      if (tstate === null)
        refuse(
          'THREAD_NOT_FOUND',
          `process ${t.pid} has no main thread state (${view.threads.length} thread(s)); pass a tid`,
        );
    } else {
      const hit = view.threads.find((x) => x.tid === tid);
      if (!hit)
        refuse(
          'THREAD_NOT_FOUND',
          `process ${t.pid} has no Python thread with native id ${tid} (known: ${view.threads.map((x) => x.tid).join(', ') || 'none'})`,
        );
      if (backend === 'sys' && hit.tstate !== view.threadsMain)
        refuse(
          'THREAD_NOT_FOUND',
          `the sys backend (sys.remote_exec) can only target the main thread; use the native backend for thread ${tid}`,
        );
      tstate = hit.tstate;
      chosenTid = tid;
    }
    const slot = threadSlot(loc, tstate!);
    if (readPending(mem, slot) === 1)
      refuse(
        'PENDING_CONFLICT',
        `thread ${chosenTid} of process ${t.pid} already has a remote-exec request pending (another tracer's, not yet picked up); retry later`,
      );
    return { mem, loc, slot, tid: chosenTid };
  } catch (e) {
    mem?.close();
    mapInspectError(e, t.pid);
  }
}

/** Command line of a tracer process that calls sys.remote_exec with the target's own interpreter. */
function sysTracerCommand(
  procRoot: string,
  t: Target,
  loc: RuntimeLocation,
): { cmd: string[]; pidArg: number } {
  const exe = readLinkOrNull(procPath(procRoot, t.pid, 'exe'))?.replace(/ \(deleted\)$/, '') ?? '';
  const rootView = readLinkOrNull(procPath(procRoot, t.pid, 'root')) ?? '/';
  const inTarget = (p: string): string =>
    rootView !== '/' && p.startsWith(rootView + '/') ? p.slice(rootView.length) : p;
  let cmd: string[];
  if (/^ld-linux.*\.so/.test(basename(exe)) || basename(exe) === 'ld.so') {
    const libc = readMaps(procRoot, t.pid).find((m) => /\/libc\.so\.6$|\/libc-[\d.]+\.so$/.test(m.path));
    if (!libc)
      refuse('INTERNAL', 'target runs through the dynamic loader but its libc mapping was not found');
    cmd = [inTarget(exe), '--library-path', inTarget(dirname(libc.path)), inTarget(loc.image)];
  } else if (loc.image === exe) {
    cmd = [inTarget(exe)];
  } else {
    refuse(
      'INTERNAL',
      `the sys backend needs a Python executable, but process ${t.pid} embeds ${basename(loc.image)} in ${basename(exe)}; use the native backend`,
    );
  }
  const code = 'import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])';
  const needNs = t.mntDiffers || t.pidDiffers || rootView !== '/';
  const pidArg = t.pidDiffers ? t.nsPid : t.pid;
  const py = [...cmd, '-I', '-c', code, String(pidArg)];
  if (!needNs) return { cmd: py, pidArg };
  const ns = ['nsenter', '-t', String(t.pid)];
  if (t.mntDiffers) ns.push('-m');
  if (t.pidDiffers) ns.push('-p');
  ns.push('-r', '-w', '--');
  return { cmd: [...ns, ...py], pidArg };
}

function runTracer(
  cmd: string[],
  script: string,
  timeoutMs: number,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd[0]!, [...cmd.slice(1), script], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 16384) stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, stderr: e.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

function mapTracerFailure(stderr: string, pid: number): ExecResult {
  const tail = stderr.trim().split('\n').slice(-3).join(' | ');
  if (/Remote debugging is not enabled/i.test(stderr))
    return outcome(
      'refused',
      'REMOTE_DEBUG_DISABLED',
      `remote debugging is disabled in process ${pid}: ${tail}`,
    );
  if (/main thread/i.test(stderr))
    return outcome(
      'refused',
      'THREAD_NOT_FOUND',
      `sys.remote_exec found no main thread in process ${pid}: ${tail}`,
    );
  if (/PermissionError|Operation not permitted|EPERM|EACCES/.test(stderr))
    return outcome('refused', 'PERMISSION_DENIED', `${permissionMessage(pid, 'EPERM')} (tracer: ${tail})`);
  if (/ProcessLookupError|No such process/.test(stderr))
    return outcome('target_gone', 'TARGET_GONE', `process ${pid} disappeared: ${tail}`);
  if (/too long/i.test(stderr)) return outcome('refused', 'PATH_TOO_LONG', tail);
  if (/FileNotFoundError|does not exist/.test(stderr))
    return outcome('refused', 'STAGING_FAILED', `the tracer could not see the staged script: ${tail}`);
  return outcome('refused', 'INTERNAL', `sys.remote_exec tracer failed: ${tail || 'no output'}`);
}

/**
 * Make process `pid` run `code` and report what happened. Never throws for expected failures: every
 * outcome is an ExecResult with a specific code, and nothing stays staged afterwards.
 */
export async function runInTarget(opts: RunOptions): Promise<ExecResult> {
  const backend: Backend = opts.backend ?? 'native';
  const procRoot = opts.procRoot ?? '/proc';
  const pickupTimeoutMs = opts.pickupTimeoutMs ?? DEFAULTS.pickupTimeoutMs;
  const budgetMs = opts.budgetMs ?? DEFAULTS.budgetMs;
  const cap = opts.outputCapBytes ?? DEFAULTS.outputCapBytes;
  let staging: Staging | null = null;
  let prepared: Prepared | null = null;
  let output = '';
  const withBackend = (r: ExecResult): ExecResult => ({ ...r, output: r.output || output, backend });
  try {
    const target = resolveTarget(procRoot, opts.pid, opts.expectStartTime);
    prepared = prepare(procRoot, target, opts.tid, backend === 'native', backend);
    const { slot, loc } = prepared;
    const runId = randomBytes(6).toString('hex');
    let paramsJson: string;
    try {
      paramsJson = JSON.stringify(opts.params ?? {});
    } catch (e) {
      return withBackend(
        outcome('refused', 'INTERNAL', `params are not serialisable as JSON: ${(e as Error).message}`),
      );
    }
    try {
      staging = stage({
        procRoot,
        pid: target.pid,
        uid: target.uid,
        gid: target.gid,
        baseDirs: opts.stagingDirs,
        maxPathBytes: slot.pathSize - 1,
        harness: renderHarness,
        files: {
          'code.py': opts.code,
          'params.json': paramsJson,
          'job.json': JSON.stringify({
            runId,
            inline: !!opts.inline,
            budgetSec: budgetMs / 1000,
            capBytes: cap,
          }),
        },
      });
    } catch (e) {
      if (e instanceof StagingError) return withBackend(outcome('refused', e.code, e.message));
      throw e;
    }
    const scriptPath = Buffer.from(staging.scriptInTarget, 'utf8');
    opts.onState?.('staged');

    const alive = (): boolean => readStartTime(procRoot, target.pid) === target.startTime;
    const goneResult = (): ExecResult =>
      outcome(
        'target_gone',
        'TARGET_GONE',
        `process ${target.pid} exited (or its pid was reused) while the run was in progress`,
      );

    // Trigger.
    const t0 = Date.now();
    if (backend === 'native') {
      try {
        writeRequest(prepared.mem, slot, scriptPath);
      } catch (e) {
        if (!alive()) return withBackend(goneResult());
        return withBackend(
          outcome(
            'refused',
            'INTERNAL',
            `writing the request into process ${target.pid} failed: ${(e as Error).message}`,
          ),
        );
      }
    } else {
      const { cmd } = sysTracerCommand(procRoot, target, loc);
      const r = await runTracer(cmd, staging.scriptInTarget, Math.max(pickupTimeoutMs, 15_000));
      if (r.code !== 0) {
        if (!alive()) return withBackend(goneResult());
        return withBackend(mapTracerFailure(r.stderr, target.pid));
      }
    }

    // Wait for pickup.
    let pickedUp = false;
    const pickupDeadline = t0 + pickupTimeoutMs;
    while (!pickedUp) {
      if (staging.exists('picked.json')) {
        pickedUp = true;
        break;
      }
      if (!alive()) return withBackend(goneResult());
      const aborted = opts.signal?.aborted === true;
      if (Date.now() >= pickupDeadline || aborted) {
        // Withdraw the request so the target never tries to open a file we are about to remove.
        let state: 'withdrawn' | 'consumed' | 'replaced' | 'unknown' = 'unknown';
        try {
          const mem = backend === 'native' ? prepared.mem : openMem(procRoot, target.pid, true);
          try {
            state = withdrawRequest(mem, slot, scriptPath);
          } finally {
            if (mem !== prepared.mem) mem.close();
          }
        } catch {
          state = 'unknown';
        }
        // Just picked up (race) or consumed: give the harness a moment to announce itself.
        const graceEnd = Date.now() + (state === 'withdrawn' ? 300 : 2000);
        while (Date.now() < graceEnd && !staging.exists('picked.json')) await sleep(20);
        if (staging.exists('picked.json')) {
          pickedUp = true;
          break;
        }
        if (!alive()) return withBackend(goneResult());
        if (state === 'consumed')
          return withBackend(
            outcome(
              'failed',
              'HARNESS_ERROR',
              `process ${target.pid} took the request but the harness never started (see the target's stderr, e.g. "Can't open debugger script")`,
            ),
          );
        const why = aborted
          ? 'cancelled before the target picked the request up'
          : `thread ${prepared.tid} did not reach a safe point within ${pickupTimeoutMs} ms (blocked in C code, sleeping or waiting?)`;
        return withBackend(
          outcome(
            'pickup_timeout',
            'PICKUP_TIMEOUT',
            `${why}; the request was ${state === 'withdrawn' ? 'withdrawn' : 'left to the target (' + state + ')'} and nothing is left staged. Try another thread (--tid) or a longer timeout`,
          ),
        );
      }
      await sleep(Date.now() - t0 < 500 ? 5 : 20);
    }
    opts.onState?.('picked_up');

    // Stream output until the harness reports.
    const decoder = new StringDecoder('utf8');
    let outOffset = 0;
    let outBytes = 0;
    let truncatedHere = false;
    const pump = (): void => {
      const chunk = staging!.readFrom('out.txt', outOffset);
      if (chunk.length === 0) return;
      outOffset += chunk.length;
      if (truncatedHere) return;
      // Safety net: the harness caps, but never let a misbehaving target grow our memory without bound.
      let slice = chunk;
      if (outBytes + chunk.length > cap + 256) {
        slice = chunk.subarray(0, Math.max(0, cap + 256 - outBytes));
        truncatedHere = true;
      }
      outBytes += slice.length;
      let text = decoder.write(slice);
      if (truncatedHere) text += decoder.end() + `\n[pyreach: output truncated at ${cap} bytes]\n`;
      if (text) {
        output += text;
        opts.onOutput?.(text);
      }
    };
    const pickedAt = Date.now();
    const resultDeadline = pickedAt + budgetMs + DEFAULTS.budgetGraceMs;
    let cancelSent = false;
    let report: HarnessReport | null = null;
    for (;;) {
      pump();
      const raw = staging.read('result.json');
      if (raw) {
        pump();
        const tail = decoder.end();
        if (tail) {
          output += tail;
          opts.onOutput?.(tail);
        }
        try {
          report = parseHarnessReport(raw);
        } catch (e) {
          return withBackend(
            outcome('failed', 'HARNESS_ERROR', `unreadable harness report: ${(e as Error).message}`),
          );
        }
        break;
      }
      if (!alive()) return withBackend(goneResult());
      if (opts.signal?.aborted && !cancelSent) {
        staging.write('cancel', '');
        cancelSent = true;
      }
      if (Date.now() >= resultDeadline) {
        const picked = safeJson(staging.read('picked.json'));
        return withBackend(
          outcome(
            'failed',
            'TIME_BUDGET_EXCEEDED',
            `the code did not finish within its ${budgetMs} ms budget and could not be interrupted (blocked in C code?); it may still be running inside process ${target.pid}`,
            { pickedUpAt: (picked?.pickedUpAt as string) ?? null, finishedAt: null },
          ),
        );
      }
      // Short runs (the common case) report fast; long ones are polled gently.
      await sleep(Date.now() - pickedAt < 300 ? 5 : 25);
    }

    return withBackend(resultFromReport(report, output, { budgetMs, outputTruncated: truncatedHere }));
  } catch (e) {
    if (e instanceof Refusal) return withBackend(e.result);
    return withBackend(outcome('failed', 'INTERNAL', `engine error: ${(e as Error)?.stack ?? String(e)}`));
  } finally {
    staging?.cleanup();
    prepared?.mem.close();
  }
}

function safeJson(b: Buffer | null): Record<string, unknown> | null {
  if (!b) return null;
  try {
    return JSON.parse(b.toString('utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}
