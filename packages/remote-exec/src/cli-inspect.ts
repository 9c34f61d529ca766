/**
 * `pyreach-exec stacks` and `pyreach-exec tasks`: inspection that runs no code in the target (see README.md,
 * "CLI contract"). Exit status: 0 when everything was read (`status: complete`), 1 when the report is partial
 * or failed, 2 for usage errors.
 */
import { parseArgs } from 'node:util';
import type { AsyncTask, StackFrame, StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { displayText } from '@pyreach/protocol/text';
import { readStacks, readTasks } from './inspect/index';

export const STACKS_USAGE = `Usage: pyreach-exec stacks --pid N [--json] [options]

Prints every thread's Python stack (innermost frame first) in every interpreter of process N, with each
thread's name, whether it is the main thread, and what it is doing (running, or blocked in which syscall,
and whether it stayed so between two looks). Read from the process's memory from outside: no code runs in
it, nothing is written, it is never paused; works where remote debugging is disabled and when every thread
is blocked.

Options:
  --pid N             Target process id (host pid)                        (required)
  --json              Print one JSON object (the StacksReport of @pyreach/protocol/inspect)
  --no-states         Do not read thread states
  --max-frames N      Frames kept per thread (default 512)
  --timeout SECONDS   Time budget of the whole read (default 5)
  -h, --help

Exit status: 0 when everything was read; 1 when the report is partial (see its errors) or failed; 2 for
usage errors.`;

export const TASKS_USAGE = `Usage: pyreach-exec tasks --pid N [--json] [options]

Prints the asyncio tasks of process N like "python -m asyncio pstree": each task's name, its coroutine stack
(innermost first) and who awaits it, as a tree. Read from the process's memory from outside, using the debug
offsets of its _asyncio module: no code runs in it.

Options:
  --pid N             Target process id (host pid)                        (required)
  --json              Print one JSON object (the TasksReport of @pyreach/protocol/inspect)
  --max-frames N      Frames kept per coroutine stack (default 512)
  --timeout SECONDS   Time budget of the whole read (default 5)
  -h, --help

Exit status: 0 when everything was read (also when the process has no asyncio tasks); 1 when the report is
partial or failed; 2 for usage errors.`;

class InspectUsageError extends Error {}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0)
    throw new InspectUsageError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function seconds(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 600)
    throw new InspectUsageError(
      `--${name} must be a number of seconds in (0, 600], got ${JSON.stringify(v)}`,
    );
  return Math.round(n * 1000);
}

const frameLine = (f: StackFrame): string =>
  `${displayText(f.function)} (${displayText(f.file)}:${f.line ?? '?'})`;

function header(r: StacksReport | TasksReport): string {
  const ns = r.nsPid !== null && r.nsPid !== r.pid ? ` (pid ${r.nsPid} in its namespace)` : '';
  const py = r.pythonVersion ? `Python ${r.pythonVersion}` : 'Python ?';
  return `Process ${r.pid}${ns}: ${py}, read from memory in ${r.durationMs.toFixed(1)} ms (${r.bytesRead} bytes), no code run`;
}

export function renderStacks(r: StacksReport): string {
  const lines: string[] = [header(r)];
  if (r.remoteDebugEnabled === false)
    lines.push('  (remote debugging is disabled in this process: run would be refused)');
  for (const e of r.errors) lines.push(`  ! ${e.code}: ${displayText(e.message)}`);
  const subinterpreters = r.interpreters.length > 1;
  for (const t of r.threads) {
    const tags: string[] = [];
    if (t.main) tags.push('main');
    if (subinterpreters) tags.push(`interpreter ${t.interpreterId}`);
    if (t.holdsGil) tags.push('holds the GIL');
    let state = '';
    if (t.state) {
      const s = t.state;
      state =
        s.status === 'blocked'
          ? ` blocked${s.syscall ? ` in ${s.syscall.name ?? `syscall ${s.syscall.number}`}` : ''}${s.uninterruptible ? ' (uninterruptible)' : ''}`
          : ` ${s.status}`;
      state += s.stable ? '' : ' (changed between looks)';
    }
    const name = t.name === null ? '' : ` "${displayText(t.name)}"`;
    lines.push('', `Thread ${t.tid}${name}${tags.length ? ` (${tags.join(', ')})` : ''}${state}`);
    for (const f of t.frames) lines.push(`    ${frameLine(f)}`);
    if (!t.frames.length && !t.error) lines.push('    (no Python frames)');
    if (t.truncated) lines.push('    … (more frames not shown)');
    if (t.error) lines.push(`  ! ${t.error.code}: ${displayText(t.error.message)}`);
  }
  return lines.join('\n') + '\n';
}

/** A pstree-like rendering: each awaiting task's coroutine path, with the tasks it awaits hanging from it. */
export function renderTasks(r: TasksReport): string {
  const lines: string[] = [header(r)];
  for (const e of r.errors) lines.push(`  ! ${e.code}: ${displayText(e.message)}`);
  if (!r.asyncio.loaded) {
    lines.push('No asyncio tasks: the process has not loaded asyncio (its C module _asyncio).');
    return lines.join('\n') + '\n';
  }
  if (!r.tasks.length) {
    lines.push('No asyncio tasks.');
    return lines.join('\n') + '\n';
  }
  const tasks = new Map(r.tasks.map((t) => [t.id, t]));
  const children = new Map<string, string[]>();
  const awaited = new Set<string>();
  const link = (parent: string, child: string): void => {
    const kids = children.get(parent) ?? [];
    if (!kids.includes(child)) kids.push(child);
    children.set(parent, kids);
    awaited.add(child);
  };
  for (const t of r.tasks) for (const w of t.awaitedBy) link(w.id, t.id);
  for (const f of r.futures) for (const w of f.awaitedBy) link(w.id, f.id);
  const label = (id: string): string => {
    const t: AsyncTask | undefined = tasks.get(id);
    if (!t) return `(F) future ${id}`;
    const flags = [t.running ? 'running' : '', t.tid === null ? 'thread gone' : `thread ${t.tid}`].filter(
      Boolean,
    );
    return `(T) ${t.name === null ? '?' : displayText(t.name)} [${id}, ${flags.join(', ')}]${t.error ? `  ! ${t.error.code}: ${displayText(t.error.message)}` : ''}`;
  };
  const render = (id: string, prefix: string, last: boolean, path: Set<string>): void => {
    lines.push(`${prefix}${last ? '└── ' : '├── '}${label(id)}`);
    let pre = prefix + (last ? '    ' : '│   ');
    if (path.has(id)) {
      lines.push(`${pre}└── (cycle: awaits a task above it)`);
      return;
    }
    const frames = [...(tasks.get(id)?.stack ?? [])].reverse(); // outermost first, down to what it awaits
    const kids = children.get(id) ?? [];
    frames.forEach((f) => {
      lines.push(`${pre}└── ${frameLine(f)}`);
      pre += '    ';
    });
    const next = new Set(path).add(id);
    kids.forEach((k, i) => render(k, pre, i === kids.length - 1, next));
  };
  const roots = [...r.tasks.map((t) => t.id), ...r.futures.map((f) => f.id)].filter((id) => !awaited.has(id));
  // Everything awaited in a loop has no root: show such tasks from themselves.
  const shown = new Set<string>();
  const mark = (id: string): void => {
    if (shown.has(id)) return;
    shown.add(id);
    for (const k of children.get(id) ?? []) mark(k);
  };
  roots.forEach((id, i) => {
    mark(id);
    render(id, '', i === roots.length - 1, new Set());
  });
  for (const t of r.tasks)
    if (!shown.has(t.id)) {
      mark(t.id);
      render(t.id, '', true, new Set());
    }
  return lines.join('\n') + '\n';
}

export async function runInspectCommand(
  cmd: 'stacks' | 'tasks',
  args: string[],
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  const usage = cmd === 'stacks' ? STACKS_USAGE : TASKS_USAGE;
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        pid: { type: 'string' },
        json: { type: 'boolean' },
        'max-frames': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...(cmd === 'stacks' ? { 'no-states': { type: 'boolean' as const } } : {}),
      },
      strict: true,
      allowPositionals: false,
    }));
    if (values.help) {
      out(usage + '\n');
      return 0;
    }
    const pid = positiveInt('pid', values.pid);
    if (pid === undefined) throw new InspectUsageError('--pid is required');
    const common = {
      pid,
      maxFrames: positiveInt('max-frames', values['max-frames']),
      timeoutMs: seconds('timeout', values.timeout),
    };
    if (common.maxFrames !== undefined && common.maxFrames > 4096)
      throw new InspectUsageError('--max-frames must be at most 4096');
    const report =
      cmd === 'stacks'
        ? await readStacks({ ...common, states: !(values as { 'no-states'?: boolean })['no-states'] })
        : await readTasks(common);
    if (values.json) out(JSON.stringify(report) + '\n');
    else if (cmd === 'stacks') out(renderStacks(report as StacksReport));
    else out(renderTasks(report as TasksReport));
    if (report.status !== 'complete' && !values.json)
      err(
        `pyreach-exec: ${report.status}: ${report.errors.map((e) => `${e.code}: ${displayText(e.message)}`).join('; ') || 'some threads or tasks could not be read completely (see above)'}\n`,
      );
    return report.status === 'complete' ? 0 : 1;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof InspectUsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      err(`pyreach-exec: ${(e as Error).message}\nRun "pyreach-exec ${cmd} --help" for usage.\n`);
      return 2;
    }
    throw e;
  }
}
