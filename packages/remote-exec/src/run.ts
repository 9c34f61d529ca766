import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { basename, dirname } from 'node:path';
import type { EngineErrorCode, ExecResult } from '@pyreach/protocol/exec';
import { encodeBytes, encodeString } from '@pyreach/protocol/text';
import { processFacts, hostIdentity } from './discovery';
import { loadFsat } from './fsat';
import { DEFAULT_LOCK_DIR, LockError, lockTarget, type TargetLock } from './lock';
import type { ProcMem } from './memory';
import { readPending, threadSlot, withdrawRequest, writeRequest, type ThreadSlot } from './native';
import { formatVersion } from './offsets';
import { procPath, readLinkOrNull, readMaps, readNs, readStartTime } from './procfs';
import { checkInterpreter } from './trust';
import {
  InspectError,
  locateRuntime,
  openMem,
  permissionMessage,
  readMainInterpreter,
  type RuntimeLocation,
} from './runtime';
import { renderHarness } from './harness';
import { listKernelThreads } from './inspect/threads';
import { chooseWake, describeBlocked, surveyThreads, wakeThread } from './wake';
import { parseHarnessReport, resultFromReport, type HarnessReport } from './report';
import { stage, StagingError, TamperError, type Staging } from './staging';

export type Backend = 'native' | 'sys';

export interface RunOptions {
  /** Host pid of the target (as seen in the engine's /proc). */
  pid: number;
  /** Start time from discovery: if the pid now belongs to another process, the run ends `target_gone`. */
  expectStartTime?: string;
  /** Native thread id (as the target sees it, i.e. the `tid` discovery lists). Wins over `thread`. */
  tid?: number;
  /**
   * Which thread picks the run up when no `tid` is given. `auto` (the native backend's default) arms every thread
   * of the main interpreter at once: the first to reach a safe point claims the run in the harness, the others
   * return at once and the engine withdraws what is still pending. `main`: the main thread only (the sys
   * backend's only choice: asked for `auto` explicitly, it refuses).
   */
  thread?: 'auto' | 'main';
  /**
   * If nothing picked up within `wakeGraceMs`, interrupt an armed thread blocked in a system call CPython retries
   * after EINTR (PTRACE_SEIZE + PTRACE_INTERRUPT, the call made to return EINTR, detach): see src/wake.ts for
   * which calls qualify and the risk. Opt-in; native backend, x86-64 only.
   */
  wake?: boolean;
  /** How long to wait for a pickup before waking. Default 300 ms. */
  wakeGraceMs?: number;
  backend?: Backend;
  code: string;
  params?: Record<string, unknown>;
  /** How long the chosen thread may take to reach a safe point. Default 10 s. */
  pickupTimeoutMs?: number;
  /** Time budget of the user's code inside the target. Default 30 s. */
  budgetMs?: number;
  /** Run on the thread that picked the request up instead of a fresh thread. */
  inline?: boolean;
  /** Output cap in bytes (of what the code prints). Default 1 MiB. */
  outputCapBytes?: number;
  /** Output as it arrives, as safe text (`@pyreach/protocol/text`). */
  onOutput?: (chunk: string) => void;
  onState?: (s: 'staged' | 'picked_up') => void;
  /**
   * Cancel. Before pickup: the request is withdrawn (`cancelled`, nothing ran). After: the code is stopped like
   * at its budget (`cancelled`/CANCELLED, with the output so far); if it cannot be interrupted (blocked in C) the
   * run still ends `cancelled`, says so, and names the thread in `leftoverThread`.
   */
  signal?: AbortSignal;
  /** Root of the proc filesystem. Default `/proc`. */
  procRoot?: string;
  /** Directories inside the target's root to stage in, in order of preference. */
  stagingDirs?: string[];
  /**
   * Directory of the per-target locks shared by every engine on the host (agent and CLI). Must belong to root
   * (or the engine's uid) and be writable by nobody else, every directory above it likewise. Default
   * `/run/pyreach/locks`.
   */
  lockDir?: string;
  /** How long to wait for another run into the same process to finish before refusing PENDING_CONFLICT. Default 0. */
  lockWaitMs?: number;
  /**
   * Identifies the run in its staging directory (root-owned `job.json`), so that a caller that stops mid-run
   * can find it again with `findStagedRuns()`. 12 to 32 lowercase hex digits; default random.
   */
  runId?: string;
  /** After a cancel, how long the code has to stop before the run is reported as not interruptible. Default 2 s. */
  cancelGraceMs?: number;
}

export const DEFAULTS = {
  pickupTimeoutMs: 10_000,
  budgetMs: 30_000,
  outputCapBytes: 1024 * 1024,
  /** Extra time after the budget for the async exception to land and the harness to report. */
  budgetGraceMs: 5_000,
  cancelGraceMs: 2_000,
  wakeGraceMs: 300,
  lockWaitMs: 0,
  lockDir: DEFAULT_LOCK_DIR,
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

interface Armed {
  tid: number;
  slot: ThreadSlot;
}

interface Prepared {
  mem: ProcMem;
  loc: RuntimeLocation;
  /** The main (or the chosen) thread: what single-thread messages name. */
  slot: ThreadSlot;
  tid: number;
  /** Every thread the request goes to: the chosen one, or (auto) each thread of the main interpreter. */
  armed: Armed[];
  mode: 'auto' | 'main' | 'tid';
}

function prepare(
  procRoot: string,
  t: Target,
  tid: number | undefined,
  writable: boolean,
  backend: Backend,
  mode: 'auto' | 'main' = 'main',
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
      if (tstate === null && mode === 'auto' && view.threads.length > 0) {
        tstate = view.threads[0]!.tstate;
        chosenTid = view.threads[0]!.tid;
      }
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
    if (tid === undefined && mode === 'auto') {
      // Main thread first: when several threads are at a safe point at once, it is the likeliest winner anyway.
      // Not the threads a previous run's harness left finishing (its watchdog polls for 50 ms more): a run
      // should land in the target's own threads. Names are the kernel's comm, as the harness sets them.
      const kernel = listKernelThreads(procRoot, t.pid);
      const ownHarness = (tid: number): boolean => /^pyreach-(run-|watchd)/.test(kernel.get(tid)?.comm ?? '');
      const others = view.threads.filter((x) => x.tstate !== tstate && x.tid > 0 && !ownHarness(x.tid));
      const armed = [
        { tid: chosenTid, slot },
        ...others.map((x) => ({ tid: x.tid, slot: threadSlot(loc, x.tstate) })),
      ];
      return { mem, loc, slot, tid: chosenTid, armed, mode: 'auto' };
    }
    return { mem, loc, slot, tid: chosenTid, armed: [{ tid: chosenTid, slot }], mode: tid ? 'tid' : 'main' };
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
): { cmd: string[]; pidArg: number; interpreter: string[] } {
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
  // -I: no environment variables, no user site, no script directory; -S: no `site`, so no .pth file runs.
  const py = [...cmd, '-I', '-S', '-c', code, String(pidArg)];
  if (!needNs) return { cmd: py, pidArg, interpreter: cmd };
  const ns = ['nsenter', '-t', String(t.pid)];
  if (t.mntDiffers) ns.push('-m');
  if (t.pidDiffers) ns.push('-p');
  ns.push('-r', '-w', '--');
  return { cmd: [...ns, ...py], pidArg, interpreter: cmd };
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

/** Refuse the sys backend when its tracer would run files a non-root user controls (checked before anything is written). */
function trustTracer(procRoot: string, t: Target, loc: RuntimeLocation, interpreter: string[]): void {
  const rootView = readLinkOrNull(procPath(procRoot, t.pid, 'root')) ?? '/';
  const native = 'The native backend (the default) runs nothing of the target on the host: use it.';
  if (t.mntDiffers || rootView !== '/')
    refuse(
      'UNTRUSTED_INTERPRETER',
      `the sys backend would run process ${t.pid}'s interpreter (${interpreter[0] ?? '?'}) from inside its container's filesystem, which the container's root controls, as this host's ${process.geteuid?.() === 0 ? 'root' : 'engine user'}. ${native}`,
    );
  let maps;
  try {
    maps = readMaps(procRoot, t.pid);
  } catch {
    refuse('TARGET_GONE', `process ${t.pid} no longer exists`, 'target_gone');
  }
  const bad = checkInterpreter({
    command: interpreter,
    image: loc.image,
    maps,
    version: loc.offsets.version,
  });
  if (bad)
    refuse(
      'UNTRUSTED_INTERPRETER',
      `the sys backend would run process ${t.pid}'s interpreter as ${process.geteuid?.() === 0 ? 'root' : 'the engine user'}, but ${bad.file}: ${bad.why}. Whoever controls it could run code with the engine's privileges (even with -I -S). ${native}`,
    );
}

/** Bytes → safe text, holding back an incomplete UTF-8 sequence at the end for the next chunk. */
class SafeTextStream {
  private held = Buffer.alloc(0);
  write(chunk: Buffer): string {
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    let cut = buf.length;
    for (let i = buf.length - 1; i >= Math.max(0, buf.length - 3); i--) {
      const b = buf[i]!;
      if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back
      const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xc2 && b <= 0xdf ? 2 : 1;
      if (buf.length - i < need) cut = i;
      break;
    }
    this.held = Buffer.from(buf.subarray(cut));
    return encodeBytes(buf.subarray(0, cut));
  }
  end(): string {
    const rest = encodeBytes(this.held);
    this.held = Buffer.alloc(0);
    return rest;
  }
}

interface PickedMarker {
  pickedUpAt: string | null;
  /** The thread that picked the request up and claimed the run. */
  picker: { tid: number; name: string | null } | null;
  runner: { tid: number; name: string | null } | null;
}

function parsePicked(raw: Buffer | null): PickedMarker | null {
  if (!raw) return null;
  try {
    const v = JSON.parse(raw.toString('latin1')) as Record<string, unknown>;
    const th = (
      r: Record<string, unknown> | null | undefined,
    ): { tid: number; name: string | null } | null =>
      r && Number.isInteger(r.tid) && (r.tid as number) >= 0
        ? {
            tid: r.tid as number,
            name: typeof r.name === 'string' ? encodeString(r.name).slice(0, 256) : null,
          }
        : null;
    return {
      pickedUpAt: typeof v.pickedUpAt === 'string' ? v.pickedUpAt.slice(0, 64) : null,
      picker: th(v),
      runner: th(v.runner as Record<string, unknown> | null | undefined),
    };
  } catch {
    return { pickedUpAt: null, picker: null, runner: null };
  }
}

function threadWords(th: { tid: number; name: string | null } | null, pid: number): string {
  return th ? `thread ${th.name ?? '?'} (tid ${th.tid}) of process ${pid}` : `process ${pid}`;
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
  const cancelGraceMs = opts.cancelGraceMs ?? DEFAULTS.cancelGraceMs;
  let staging: Staging | null = null;
  let prepared: Prepared | null = null;
  let lock: TargetLock | null = null;
  let output = '';
  // Facts learnt on the way (who picked up, what was woken) go with whatever outcome the run ends in.
  const attach: Partial<ExecResult> = {};
  const withBackend = (r: ExecResult): ExecResult => ({
    ...r,
    ...attach,
    output: r.output || output,
    backend,
  });
  const finish = (r: ExecResult): ExecResult => {
    // Whatever the run ended as, staging is removed now; what could not be (a moved directory) is tampering.
    const problems = staging?.cleanup() ?? [];
    staging = null;
    if (problems.length && r.errorCode !== 'STAGING_TAMPERED')
      return withBackend(
        outcome('failed', 'STAGING_TAMPERED', `staging was tampered with: ${problems.join('; ')}`, {
          pickedUpAt: r.pickedUpAt,
          finishedAt: r.finishedAt,
          thread: r.thread,
        }),
      );
    return withBackend(r);
  };
  try {
    try {
      await loadFsat();
    } catch (e) {
      return withBackend(outcome('refused', 'STAGING_FAILED', (e as Error).message));
    }
    const threadMode: 'auto' | 'main' = opts.thread ?? (backend === 'native' ? 'auto' : 'main');
    if (backend === 'sys' && threadMode === 'auto' && opts.tid === undefined)
      return withBackend(
        outcome(
          'refused',
          'THREAD_NOT_FOUND',
          'the sys backend (sys.remote_exec) can only aim at the main thread, not at any thread (thread auto): ask for the main thread (--thread main) or use the native backend; nothing was written',
        ),
      );
    if (opts.wake && backend === 'sys')
      return withBackend(
        outcome(
          'refused',
          'INTERNAL',
          'wake needs the native backend (the sys backend cannot tell which thread to wake); nothing was written',
        ),
      );
    const target = resolveTarget(procRoot, opts.pid, opts.expectStartTime);
    prepared = prepare(procRoot, target, opts.tid, backend === 'native', backend, threadMode);
    let { slot, loc } = prepared;
    const tracer = backend === 'sys' ? sysTracerCommand(procRoot, target, loc) : null;
    if (tracer) trustTracer(procRoot, target, loc, tracer.interpreter);
    if (opts.runId !== undefined && !/^[0-9a-f]{12,32}$/.test(opts.runId))
      return withBackend(
        outcome(
          'refused',
          'INTERNAL',
          `runId must be 12 to 32 lowercase hex digits, got ${JSON.stringify(opts.runId.slice(0, 64))}`,
        ),
      );
    const runId = opts.runId ?? randomBytes(6).toString('hex');
    let paramsJson: string;
    try {
      paramsJson = JSON.stringify(opts.params ?? {});
    } catch (e) {
      return withBackend(
        outcome('refused', 'INTERNAL', `params are not serialisable as JSON: ${(e as Error).message}`),
      );
    }

    // One run per target process at a time, across every engine on this host.
    let got;
    const euid = process.geteuid?.() ?? 0;
    // An engine that is not root (CAP_SYS_PTRACE, or the target's own user) cannot create /run/pyreach: its
    // own runtime directory is the fallback (only it can write there).
    const lockDirs = opts.lockDir
      ? [opts.lockDir]
      : euid === 0
        ? [DEFAULTS.lockDir]
        : [DEFAULTS.lockDir, `/run/user/${euid}/pyreach/locks`];
    for (let i = 0; ; i++) {
      try {
        got = await lockTarget({
          lockDir: lockDirs[i]!,
          pid: target.pid,
          startTime: target.startTime,
          waitMs: opts.lockWaitMs ?? DEFAULTS.lockWaitMs,
          signal: opts.signal,
        });
        break;
      } catch (e) {
        if (!(e instanceof LockError)) throw e;
        if (i + 1 < lockDirs.length) continue;
        return withBackend(
          outcome(
            'refused',
            'INTERNAL',
            `${e.message}; pass a lock directory of the engine's own (lockDir, --lock-dir)`,
          ),
        );
      }
    }
    if (!got.ok) {
      if (got.reason === 'aborted')
        return withBackend(
          outcome(
            'cancelled',
            'CANCELLED',
            'cancelled while waiting for another run into this process; nothing ran',
          ),
        );
      return withBackend(
        outcome(
          'refused',
          'PENDING_CONFLICT',
          `another Pyreach run into process ${target.pid} is in progress (${got.holder}); waited ${got.waitedMs} ms. Nothing was written; retry later or wait longer (lockWaitMs, --lock-wait)`,
        ),
      );
    }
    lock = got.lock;
    const alive0 = (): boolean => readStartTime(procRoot, target.pid) === target.startTime;
    const goneNow = (): ExecResult =>
      outcome('target_gone', 'TARGET_GONE', `process ${target.pid} no longer exists`);
    if (readStartTime(procRoot, target.pid) !== target.startTime)
      return withBackend(
        outcome('target_gone', 'TARGET_GONE', `process ${target.pid} exited while waiting for its turn`, {}),
      );
    if (got.waitedMs > 0) {
      // The thread may have ended (its state freed) while we waited: look it up again before writing to it.
      prepared.mem.close();
      prepared = null;
      prepared = prepare(procRoot, target, opts.tid, backend === 'native', backend, threadMode);
      ({ slot, loc } = prepared);
    }
    {
      // A thread with another tracer's request pending is left to it; with none left, the run is refused.
      const free: Armed[] = [];
      for (const a of prepared.armed) {
        let pending: number;
        try {
          pending = readPending(prepared.mem, a.slot);
        } catch {
          if (!alive0()) return withBackend(goneNow());
          continue; // that thread ended meanwhile
        }
        if (pending !== 1) free.push(a);
      }
      if (free.length === 0)
        return withBackend(
          outcome(
            'refused',
            'PENDING_CONFLICT',
            `${prepared.armed.length > 1 ? `every thread (${prepared.armed.length})` : `thread ${prepared.tid}`} of process ${target.pid} already has a remote-exec request pending (another tracer's, such as pdb -p or sys.remote_exec, not yet picked up); nothing was written, retry later`,
          ),
        );
      prepared.armed = free;
    }
    if (opts.signal?.aborted)
      return withBackend(
        outcome('cancelled', 'CANCELLED', 'cancelled before anything was staged; nothing ran'),
      );

    try {
      staging = stage({
        procRoot,
        pid: target.pid,
        uid: target.uid,
        gid: target.gid,
        baseDirs: opts.stagingDirs,
        maxPathBytes: slot.pathSize - 1,
        outputCapBytes: cap,
        harness: renderHarness,
        verifyTarget: () => {
          if (readStartTime(procRoot, target.pid) !== target.startTime)
            throw new StagingError('STAGING_FAILED', `process ${target.pid} exited before staging`);
        },
        inputs: { 'code.py': opts.code, 'params.json': paramsJson },
        settings: {
          'job.json': JSON.stringify({
            runId,
            inline: !!opts.inline,
            budgetSec: budgetMs / 1000,
            capBytes: cap,
          }),
        },
      });
    } catch (e) {
      if (e instanceof StagingError)
        return withBackend(outcome(e.code === 'STAGING_TAMPERED' ? 'failed' : 'refused', e.code, e.message));
      throw e;
    }
    const st = staging;
    const scriptPath = Buffer.from(st.scriptInTarget, 'utf8');
    opts.onState?.('staged');

    const alive = (): boolean => readStartTime(procRoot, target.pid) === target.startTime;
    const goneResult = (): ExecResult =>
      outcome(
        'target_gone',
        'TARGET_GONE',
        `process ${target.pid} exited (or its pid was reused) while the run was in progress`,
      );
    const memFor = (writable: boolean): { mem: ProcMem; done: () => void } => {
      if (backend === 'native') return { mem: prepared!.mem, done: () => {} };
      const mem = openMem(procRoot, target.pid, writable);
      return { mem, done: () => mem.close() };
    };
    /** Who holds a thread's request slot now: ours, pending or taken, or another tracer's path. */
    const slotPath = (s: ThreadSlot): Buffer | null => {
      try {
        const { mem, done } = memFor(false);
        try {
          return mem.read(s.pathAddr, scriptPath.length + 1);
        } finally {
          done();
        }
      } catch {
        return null;
      }
    };
    const ours = Buffer.concat([scriptPath, Buffer.from([0])]);
    const conflict = (): ExecResult =>
      outcome(
        'failed',
        'PENDING_CONFLICT',
        `another tracer (pdb -p, sys.remote_exec or another tool) replaced this run's request in ${active.length > 1 || prepared!.mode === 'auto' ? 'every armed thread' : `thread ${prepared!.tid}`} of process ${target.pid} before it was picked up; this run's code did not run`,
      );
    /** Withdraw the request from every armed thread; the states say which were still pending. */
    const withdrawAll = (): ('withdrawn' | 'consumed' | 'replaced' | 'unknown')[] => {
      const out: ('withdrawn' | 'consumed' | 'replaced' | 'unknown')[] = [];
      let m: { mem: ProcMem; done: () => void } | null = null;
      try {
        m = memFor(true);
      } catch {
        return active.map(() => 'unknown');
      }
      try {
        for (const a of active) {
          try {
            out.push(withdrawRequest(m.mem, a.slot, scriptPath));
          } catch {
            out.push('unknown');
          }
        }
      } finally {
        m.done();
      }
      return out;
    };
    const tampered = (e: TamperError, extra: Partial<ExecResult> = {}): ExecResult => {
      try {
        st.requestCancel();
      } catch {
        /* the harness will stop at its budget */
      }
      return outcome(
        'failed',
        'STAGING_TAMPERED',
        `staging was tampered with: ${e.message}; the run was stopped and its report discarded`,
        extra,
      );
    };

    // Trigger: one request per armed thread (auto: every thread of the main interpreter).
    const t0 = Date.now();
    let active: Armed[] = [];
    if (backend === 'native') {
      let lastError: Error | null = null;
      for (const a of prepared.armed) {
        try {
          // The thread may have ended since it was listed (its state freed): write only into a state that
          // still carries its native id.
          if (prepared.mem.u64(a.slot.tstate + loc.offsets.tstateNativeThreadId) !== BigInt(a.tid)) continue;
          writeRequest(prepared.mem, a.slot, scriptPath);
          active.push(a);
        } catch (e) {
          lastError = e as Error;
        }
      }
      if (active.length === 0) {
        if (!alive()) return finish(goneResult());
        return finish(
          outcome(
            'refused',
            'INTERNAL',
            `writing the request into process ${target.pid} failed: ${lastError?.message ?? 'its threads ended meanwhile'}`,
          ),
        );
      }
    } else {
      active = prepared.armed;
      const r = await runTracer(tracer!.cmd, st.scriptInTarget, Math.max(pickupTimeoutMs, 15_000));
      if (r.code !== 0) {
        if (!alive()) return finish(goneResult());
        return finish(mapTracerFailure(r.stderr, target.pid));
      }
    }

    // Wait for pickup (waking a blocked thread when asked to).
    let picked: PickedMarker | null = null;
    const pickupDeadline = t0 + pickupTimeoutMs;
    let lastSlotCheck = t0;
    const woken: NonNullable<ExecResult['woken']> = [];
    const wakeTried = new Set<number>();
    const wakeGraceMs = Math.max(0, opts.wakeGraceMs ?? DEFAULTS.wakeGraceMs);
    let nextWakeAt = t0 + wakeGraceMs;
    let wakeNote = '';
    try {
      while (!picked) {
        st.check();
        picked = parsePicked(st.readPicked());
        if (picked) break;
        if (!alive()) return finish(goneResult());
        const now = Date.now();
        if (now - lastSlotCheck >= 50) {
          lastSlotCheck = now;
          // A thread whose slot another tracer took over is its now: leave it alone from here on.
          active = active.filter((a) => {
            const cur = slotPath(a.slot);
            return !(
              cur &&
              !cur.equals(ours) &&
              readPendingSafe(prepared!, procRoot, target.pid, a.slot) === 1
            );
          });
          if (active.length === 0) return finish(conflict());
        }
        if (opts.wake && backend === 'native' && now >= nextWakeAt && now < pickupDeadline) {
          nextWakeAt = now + Math.max(wakeGraceMs, 200);
          const survey = await surveyThreads({
            procRoot,
            pid: target.pid,
            tids: active.map((a) => a.tid),
          });
          const pick = chooseWake(survey, wakeTried);
          if (pick && !parsePicked(st.readPicked())) {
            wakeTried.add(pick.tid);
            const w = wakeThread(pick.hostTid, pick.syscall!.number);
            if (w.ok) {
              woken.push({
                tid: pick.tid,
                name: pick.name,
                syscall: pick.syscall!.name ?? `syscall ${pick.syscall!.number}`,
                interrupted: w.interrupted,
              });
              attach.woken = woken;
            } else wakeNote = w.message;
          } else if (!pick && woken.length === 0) {
            wakeNote = 'no armed thread was blocked in a system call that wake may interrupt';
          }
        }
        const aborted = opts.signal?.aborted === true;
        if (now >= pickupDeadline || aborted) {
          // Withdraw the request so the target never tries to open a file we are about to remove.
          const states = withdrawAll();
          const anyConsumed = states.includes('consumed');
          // Just picked up (race) or consumed: give the harness a moment to announce itself.
          const graceEnd = Date.now() + (anyConsumed ? 2000 : 300);
          while (Date.now() < graceEnd && !(picked = parsePicked(st.readPicked()))) await sleep(20);
          if (picked) break;
          if (!alive()) return finish(goneResult());
          if (states.length > 0 && states.every((x) => x === 'replaced')) return finish(conflict());
          if (anyConsumed && active.length === 1) {
            const cur = slotPath(active[0]!.slot);
            if (cur && !cur.equals(ours)) return finish(conflict());
            return finish(
              outcome(
                'failed',
                'HARNESS_ERROR',
                `process ${target.pid} took the request but the harness never started (see the target's stderr, e.g. "Can't open debugger script", or an audit hook that refused it)`,
              ),
            );
          }
          const withdrawn = states.every((x) => x === 'withdrawn')
            ? 'withdrawn'
            : `withdrawn where still pending (${states.join(', ')})`;
          if (aborted)
            return finish(
              outcome(
                'cancelled',
                'CANCELLED',
                `cancelled before the target picked the request up; the request was ${withdrawn} and nothing ran`,
                {},
              ),
            );
          const survey = await surveyThreads({ procRoot, pid: target.pid, tids: active.map((a) => a.tid) });
          const who =
            prepared.mode === 'auto'
              ? `none of the ${active.length} thread(s) of the main interpreter reached a safe point`
              : `thread ${prepared.tid} did not reach a safe point`;
          const wakeWords = opts.wake
            ? woken.length
              ? ` Woken: ${woken.map((w) => `thread ${w.tid} in ${w.syscall}`).join(', ')}, but it did not pick up (a C extension that does not retry, or CPython waiting again without running pending calls).`
              : ` Wake found nothing to wake${wakeNote ? `: ${wakeNote}` : ''}.`
            : '';
          return finish(
            outcome(
              'pickup_timeout',
              'PICKUP_TIMEOUT',
              `${who} within ${pickupTimeoutMs} ms: ${describeBlocked(survey, !!opts.wake)}.${wakeWords} The request was ${withdrawn} and nothing is left staged. ${prepared.mode === 'auto' ? 'Retry with' : 'Try another thread (--tid), --thread auto, or'} a longer timeout`,
              {},
            ),
          );
        }
        await sleep(Date.now() - t0 < 500 ? 5 : 20);
      }
    } catch (e) {
      if (e instanceof TamperError) {
        try {
          withdrawAll();
        } catch {
          /* best effort */
        }
        return finish(tampered(e));
      }
      throw e;
    }
    // The others return at once (the harness's claim); withdraw what is still pending so they never look.
    if (active.length > 1) withdrawAll();
    opts.onState?.('picked_up');
    const runner = picked.runner;
    const pickedUpAt = picked.pickedUpAt;
    attach.pickedUpBy = picked.picker;

    // Stream output until the harness reports.
    const text = new SafeTextStream();
    let outOffset = 0;
    const emit = (s: string): void => {
      if (!s) return;
      output += s;
      opts.onOutput?.(s);
    };
    const pump = (): void => {
      for (;;) {
        const chunk = st.readOutput(outOffset, 1024 * 1024);
        if (chunk.length === 0) return;
        outOffset += chunk.length;
        emit(text.write(chunk));
      }
    };
    const pickedAt = Date.now();
    const resultDeadline = pickedAt + budgetMs + DEFAULTS.budgetGraceMs;
    let cancelAt: number | null = null;
    let report: HarnessReport | null = null;
    try {
      for (;;) {
        pump();
        const raw = st.readResult();
        if (raw) {
          pump();
          emit(text.end());
          st.check();
          try {
            report = parseHarnessReport(raw.toString('latin1'));
          } catch (e) {
            return finish(
              outcome(
                'failed',
                'HARNESS_ERROR',
                `unreadable harness report: ${encodeString((e as Error).message)}`,
                {
                  pickedUpAt,
                },
              ),
            );
          }
          break;
        }
        st.check();
        if (!alive()) return finish(goneResult());
        if (opts.signal?.aborted && cancelAt === null) {
          st.requestCancel();
          cancelAt = Date.now();
        }
        if (cancelAt !== null && Date.now() >= cancelAt + cancelGraceMs) {
          emit(text.end());
          return finish(
            outcome(
              'cancelled',
              'CANCELLED',
              `cancelled, but the code could not be interrupted within ${cancelGraceMs} ms (blocked in C code?); it may still be running in ${threadWords(runner, target.pid)}`,
              { pickedUpAt, finishedAt: null, thread: runner, leftoverThread: runner },
            ),
          );
        }
        if (Date.now() >= resultDeadline) {
          emit(text.end());
          return finish(
            outcome(
              'failed',
              'TIME_BUDGET_EXCEEDED',
              `the code did not finish within its ${budgetMs} ms budget and could not be interrupted (blocked in C code?); it may still be running in ${threadWords(runner, target.pid)}`,
              { pickedUpAt, finishedAt: null, thread: runner, leftoverThread: runner },
            ),
          );
        }
        // Short runs (the common case) report fast; long ones are polled gently.
        await sleep(Date.now() - pickedAt < 300 ? 5 : 25);
      }
    } catch (e) {
      if (e instanceof TamperError) {
        emit(text.end());
        return finish(tampered(e, { pickedUpAt, thread: runner }));
      }
      throw e;
    }
    return finish(resultFromReport(report, output, { budgetMs }));
  } catch (e) {
    if (e instanceof Refusal) return finish(e.result);
    return finish(outcome('failed', 'INTERNAL', `engine error: ${(e as Error)?.stack ?? String(e)}`));
  } finally {
    if (staging) (staging as Staging).cleanup();
    prepared?.mem.close();
    lock?.release();
  }
}

function readPendingSafe(p: Prepared, procRoot: string, pid: number, slot: ThreadSlot): number | null {
  try {
    return readPending(p.mem, slot);
  } catch {
    try {
      const mem = openMem(procRoot, pid, false);
      try {
        return readPending(mem, slot);
      } finally {
        mem.close();
      }
    } catch {
      return null;
    }
  }
}
