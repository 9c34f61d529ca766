/**
 * Inspection jobs (`action: inspect`): every thread's Python stack, or the asyncio task graph, read from the
 * target's memory from outside by the engine's reader (`readStacks` / `readTasks`). No code runs in the
 * target, nothing is written to it, it is never paused.
 *
 * Each read happens in a **child process** the agent kills on a deadline. The reader bounds every read, but one
 * read the kernel blocks cannot be cut from inside the reading process: a target can unmap a page the reader
 * was allowed to touch and map a file of its own FUSE server there between the reader's check and its read
 * (packages/remote-exec README, "Limits"). Killed from outside, such a read costs the agent nothing but the
 * child. The child is the agent's own program run again with a hidden sub-command (`__inspect-child`), so the
 * single-file bundle needs nothing beside it; it reads the request from its argument and writes one JSON line.
 *
 * Before reading, the child looks at the target once more (the same discovery the inventory uses): a pid that
 * changed hands is `gone`, a process that is not CPython is `not_python`, and a process that disabled remote
 * debugging is only read when the parent said the local policy allows it (`allowOptedOut`).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import type { ReportedResult, ReportErrorCode } from '@pyreach/protocol/agent';
import { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { fitReport, REPORT_MAX_BYTES } from './fit';
import { readTargetFacts } from './procinfo';

/** What the agent asks its child to read. Travels as the child's one argument (nothing secret in it). */
export const InspectRequest = z
  .object({
    pid: z.number().int().positive(),
    startTime: z.string().regex(/^\d+$/),
    what: z.enum(['stacks', 'tasks']),
    /** The local policy allows reading a process that disabled remote debugging. */
    allowOptedOut: z.boolean(),
    readTimeoutMs: z.number().int().positive().max(600_000),
    maxFrames: z.number().int().positive().max(4096),
    maxReadBytes: z.number().int().positive(),
    /** The child cuts its report to this many bytes of JSON (one message). */
    maxReportBytes: z.number().int().positive(),
    procRoot: z.string().min(1).optional(),
  })
  .strict();
export type InspectRequest = z.infer<typeof InspectRequest>;

/** The child's one line on stdout. The report is validated by the parent with its protocol schema. */
const ChildAnswer = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('report'), report: z.unknown(), note: z.string().max(4096).nullable() }),
  z.object({ kind: z.literal('opted_out'), remoteDebugEnabled: z.boolean().nullable() }),
  z.object({ kind: z.literal('gone'), message: z.string().max(4096) }),
  z.object({ kind: z.literal('not_python'), message: z.string().max(4096) }),
]);
type ChildAnswer = z.infer<typeof ChildAnswer>;

export type InspectOutcome =
  | { kind: 'report'; what: 'stacks'; report: StacksReport; note: string | null }
  | { kind: 'report'; what: 'tasks'; report: TasksReport; note: string | null }
  | { kind: 'opted_out'; remoteDebugEnabled: boolean | null }
  | { kind: 'gone'; message: string }
  | { kind: 'not_python'; message: string }
  | { kind: 'timeout'; afterMs: number }
  | { kind: 'cancelled' }
  | { kind: 'invalid'; message: string };

/** The seam between the job pipeline and the reading child (unit tests substitute a scripted one). */
export interface Inspector {
  inspect(req: InspectRequest, opts: { deadlineMs: number; signal: AbortSignal }): Promise<InspectOutcome>;
}

// ---- the child ------------------------------------------------------------------------------------------

/** Runs in the child: look at the target, apply the opted-out rule the parent passed, read, cut to size. */
export async function readInChild(req: InspectRequest): Promise<ChildAnswer> {
  // Loaded here, not at the agent's start: only the child reads memory for inspections.
  const { discover, readStacks, readTasks } = await import('@pyreach/remote-exec');
  const procRoot = req.procRoot ?? '/proc';
  const [p] = await discover({ pids: [req.pid], procRoot });
  if (!p) {
    const facts = readTargetFacts(req.pid, procRoot);
    if (!facts || facts.startTime !== req.startTime)
      return { kind: 'gone', message: `process ${req.pid} has exited` };
    return { kind: 'not_python', message: `process ${req.pid} is not a CPython process the engine can read` };
  }
  if (p.startTime !== req.startTime)
    return {
      kind: 'gone',
      message: `pid ${req.pid} now belongs to another process (start time ${p.startTime}, expected ${req.startTime})`,
    };
  if (p.remoteDebugEnabled !== true && !req.allowOptedOut)
    return { kind: 'opted_out', remoteDebugEnabled: p.remoteDebugEnabled };
  const common = {
    pid: req.pid,
    procRoot,
    maxFrames: req.maxFrames,
    maxBytes: req.maxReadBytes,
    timeoutMs: req.readTimeoutMs,
  };
  const report = req.what === 'stacks' ? await readStacks(common) : await readTasks(common);
  const fitted = fitReport(report, req.maxReportBytes);
  return { kind: 'report', report: fitted.report, note: fitted.note };
}

/** `pyreach-agent __inspect-child <request JSON>`: one JSON line on stdout; exit 0, or 2 for a bad request. */
export async function inspectChildMain(args: string[]): Promise<number> {
  const req = InspectRequest.safeParse(
    (() => {
      try {
        return JSON.parse(args[0] ?? '');
      } catch {
        return null;
      }
    })(),
  );
  if (!req.success) {
    process.stderr.write(`pyreach-agent: __inspect-child: bad request: ${z.prettifyError(req.error)}\n`);
    return 2;
  }
  const answer = await readInChild(req.data);
  await new Promise<void>((resolve, reject) =>
    process.stdout.write(JSON.stringify(answer) + '\n', (e) => (e ? reject(e) : resolve())),
  );
  return 0;
}

// ---- the parent -----------------------------------------------------------------------------------------

/** More than a cut report can be: the child is broken or not ours. */
export const MAX_CHILD_OUTPUT_BYTES = 4 * REPORT_MAX_BYTES;

export interface ChildCommand {
  /** Executable (the Node binary) and the arguments before the request, e.g. [bundle, '__inspect-child']. */
  command: string;
  args: string[];
}

/**
 * How this process starts itself again: the same Node binary, the same entry (the bundle, or cli.ts under the
 * loader it was started with), the hidden sub-command. The child's heap is capped so a hostile report costs at
 * most that much memory; debugger flags are not passed on (their port is the parent's).
 */
export function selfCommand(
  execPath: string,
  execArgv: readonly string[],
  entry: string,
  heapMb = 256,
): ChildCommand {
  const argv = execArgv.filter((a) => !/^--(inspect|debug)/.test(a) && !a.startsWith('--max-old-space-size'));
  return { command: execPath, args: [...argv, `--max-old-space-size=${heapMb}`, entry, '__inspect-child'] };
}

function parseAnswer(stdout: string, what: 'stacks' | 'tasks', expectPid: number): InspectOutcome {
  const line = stdout.trim();
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { kind: 'invalid', message: `the reading child wrote no JSON answer (${line.length} characters)` };
  }
  const a = ChildAnswer.safeParse(raw);
  if (!a.success)
    return {
      kind: 'invalid',
      message: `the reading child's answer is malformed: ${z.prettifyError(a.error)}`,
    };
  if (a.data.kind !== 'report') return a.data;
  // The receiver parses: the report is what a (possibly hostile) target's memory made of it.
  const pid = (a.data.report as { pid?: unknown } | null)?.pid;
  if (pid !== expectPid)
    return {
      kind: 'invalid',
      message: `the reading child answered for pid ${String(pid)}, not ${expectPid}`,
    };
  // The child cut it to one message already; a child that did not is cut here (a no-op when it fits).
  if (what === 'stacks') {
    const r = StacksReport.safeParse(a.data.report);
    if (!r.success)
      return {
        kind: 'invalid',
        message: `the stacks report does not parse: ${z.prettifyError(r.error).slice(0, 2048)}`,
      };
    const fitted = fitReport(r.data);
    return { kind: 'report', what, report: fitted.report, note: fitted.note ?? a.data.note };
  }
  const r = TasksReport.safeParse(a.data.report);
  if (!r.success)
    return {
      kind: 'invalid',
      message: `the tasks report does not parse: ${z.prettifyError(r.error).slice(0, 2048)}`,
    };
  const fitted = fitReport(r.data);
  return { kind: 'report', what, report: fitted.report, note: fitted.note ?? a.data.note };
}

/** Spawns the reading child per inspection and kills it at the deadline, on a cancel, or when it says too much. */
export class ChildInspector implements Inspector {
  constructor(
    private readonly cmd: ChildCommand,
    /** Called with the child's pid once it runs (tests and logs). */
    private readonly onSpawn?: (pid: number) => void,
  ) {}

  inspect(req: InspectRequest, opts: { deadlineMs: number; signal: AbortSignal }): Promise<InspectOutcome> {
    return new Promise((resolve) => {
      const started = Date.now();
      // No environment of the agent's reaches the child (NODE_OPTIONS, proxies, secrets): it needs none.
      const child = spawn(this.cmd.command, [...this.cmd.args, JSON.stringify(req)], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
      });
      let done = false;
      const out: Buffer[] = [];
      let outBytes = 0;
      let err = '';
      const finish = (o: InspectOutcome): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        opts.signal.removeEventListener('abort', onAbort);
        resolve(o);
      };
      // SIGKILL and resolve at once: a child stuck in an uninterruptible wait may take its time to go.
      const kill = (o: InspectOutcome): void => {
        child.kill('SIGKILL');
        finish(o);
      };
      const timer = setTimeout(
        () => kill({ kind: 'timeout', afterMs: Date.now() - started }),
        Math.max(1, opts.deadlineMs),
      );
      const onAbort = (): void => kill({ kind: 'cancelled' });
      if (opts.signal.aborted) return kill({ kind: 'cancelled' });
      opts.signal.addEventListener('abort', onAbort, { once: true });
      child.on('spawn', () => {
        if (child.pid === undefined) return;
        // If memory runs short (the agent's unit has a memory limit, and a hostile target can make a report
        // big), the kernel kills this child first, never the agent. Raising it needs no privilege.
        try {
          writeFileSync(`/proc/${child.pid}/oom_score_adj`, '1000');
        } catch {
          /* gone already, or no /proc: the heap cap still bounds it */
        }
        this.onSpawn?.(child.pid);
      });
      child.on('error', (e) =>
        finish({ kind: 'invalid', message: `the reading child could not run: ${e.message}` }),
      );
      child.stdout!.on('data', (d: Buffer) => {
        outBytes += d.length;
        if (outBytes > MAX_CHILD_OUTPUT_BYTES)
          return kill({
            kind: 'invalid',
            message: `the reading child wrote more than ${MAX_CHILD_OUTPUT_BYTES} bytes`,
          });
        out.push(d);
      });
      child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2048)));
      child.on('close', (code, signal) => {
        if (done) return;
        if (code !== 0)
          return finish({
            kind: 'invalid',
            message: `the reading child ended with ${signal ?? `exit code ${code}`} before answering${signal === 'SIGKILL' ? ' (killed from outside: most likely the memory limit, as the kernel kills a reading child first)' : ''}${err.trim() ? `: ${err.trim().slice(-1024)}` : ''}`,
          });
        finish(parseAnswer(Buffer.concat(out).toString('utf8'), req.what, req.pid));
      });
    });
  }
}

// ---- the result -----------------------------------------------------------------------------------------

/** Issue codes that are also engine codes (a dashboard already knows what they mean). */
const SHARED_CODES = new Set(['NOT_PYTHON', 'PERMISSION_DENIED', 'UNSUPPORTED_VERSION']);

const NOTHING_RAN = 'Nothing ran in the target.';

function issuesText(issues: readonly { code: string; message: string }[]): string {
  return issues
    .slice(0, 8)
    .map((i) => `${i.code}: ${i.message}`)
    .join('; ');
}

/**
 * The job's result for what the reading child answered. `succeeded` only for a report that parsed with its
 * schema and says `complete` or `partial`; the report itself is the result value (`result`), output is empty.
 */
export function inspectResult(
  what: 'stacks' | 'tasks',
  o: InspectOutcome,
  deadlineSeconds: number,
): ReportedResult {
  const cut = (m: string): string => (m.length > 4096 ? m.slice(0, 4095) + '…' : m);
  switch (o.kind) {
    case 'report': {
      const r = o.report;
      const problems = [
        ...r.errors,
        ...(o.what === 'stacks' ? o.report.threads : o.report.tasks).flatMap((x) =>
          x.error ? [x.error] : [],
        ),
      ];
      const note = o.note ? ` ${o.note}.` : '';
      if (r.status === 'failed') {
        const first = r.errors[0] ?? problems[0] ?? { code: 'INTERNAL', message: 'no reason given' };
        if (first.code === 'TARGET_GONE')
          return {
            status: 'target_gone',
            errorCode: 'TARGET_GONE',
            message: cut(`the process exited: ${first.message}`),
            output: '',
            result: r,
          };
        return {
          status: 'failed',
          errorCode: SHARED_CODES.has(first.code) ? (first.code as ReportErrorCode) : 'INSPECT_FAILED',
          message: cut(
            `the ${what} could not be read: ${issuesText(r.errors.length ? r.errors : [first])}. ${NOTHING_RAN}`,
          ),
          error: { type: first.code, message: first.message },
          output: '',
          result: r,
        };
      }
      const size =
        o.what === 'stacks'
          ? `${o.report.threads.length} thread(s)`
          : o.report.asyncio.loaded
            ? `${o.report.tasks.length} asyncio task(s)`
            : 'no asyncio tasks (asyncio is not loaded)';
      const read = `${size} read from memory in ${Math.round(r.durationMs)} ms; no code ran in the target.`;
      if (r.status === 'partial')
        return {
          status: 'succeeded',
          message: cut(
            `partial report: ${read} Not everything could be read completely: what could be read is there, and each ${what === 'stacks' ? "thread's" : "task's"} "error" and the report's "errors" say what is missing and why (${issuesText(problems)}).${note}`,
          ),
          output: '',
          result: r,
        };
      return { status: 'succeeded', message: cut(`${read}${note}`), output: '', result: r };
    }
    case 'gone':
      return {
        status: 'target_gone',
        errorCode: 'TARGET_GONE',
        message: cut(`${o.message}. ${NOTHING_RAN}`),
        output: '',
      };
    case 'not_python':
      return {
        status: 'failed',
        errorCode: 'NOT_PYTHON',
        message: cut(`${o.message}. ${NOTHING_RAN}`),
        output: '',
      };
    case 'timeout':
      return {
        status: 'failed',
        errorCode: 'INSPECT_TIMEOUT',
        message: `the reading child did not answer within ${deadlineSeconds} s (inspection.deadlineSeconds) and was killed after ${Math.round(o.afterMs)} ms: a read blocked in the kernel (a file the target serves itself mapped under the reader) or an overloaded host. ${NOTHING_RAN}`,
        output: '',
      };
    case 'cancelled':
      return {
        status: 'cancelled',
        errorCode: 'CANCELLED',
        message: `cancelled while reading. ${NOTHING_RAN}`,
        output: '',
      };
    case 'invalid':
      return {
        status: 'failed',
        errorCode: 'INSPECT_INVALID',
        message: cut(`${o.message}. ${NOTHING_RAN}`),
        output: '',
      };
    case 'opted_out':
      // Handled by the caller (a refusal); kept total for the type.
      return {
        status: 'refused',
        errorCode: 'REMOTE_DEBUG_DISABLED',
        message: `the process opted out. ${NOTHING_RAN}`,
        output: '',
      };
  }
}
