/**
 * pyreach-exec — command-line face of the engine. Contract (stable; others script against it):
 *   pyreach-exec list [--json]
 *   pyreach-exec run --pid N [--thread auto|main] [--tid T] [--wake] [--backend native|sys] (--code SRC | --file PATH)
 *                    [--params-json JSON] [--timeout SECONDS] [--budget SECONDS] [--inline] [--json]
 *                    [--lock-wait SECONDS] [--lock-dir DIR] [--staging-dir DIR]...
 *   pyreach-exec stacks --pid N [--json] [--no-states] [--max-frames N] [--timeout SECONDS]   (cli-inspect.ts)
 *   pyreach-exec tasks --pid N [--json] [--max-frames N] [--timeout SECONDS]                  (cli-inspect.ts)
 * Exit status: 0 only when the run succeeded (run) / the scan worked (list); 1 for any other outcome;
 * 2 for usage errors.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runInspectCommand } from './cli-inspect';
import { displayText } from '@pyreach/protocol/text';
import { discover } from './discovery';
import { DEFAULTS, runInTarget } from './run';

const USAGE = `Usage: pyreach-exec <command> [options]

Commands:
  list    List the CPython processes of this host
  run     Run Python code inside a live CPython 3.14 process
  stacks  Print every thread's Python stack, read from memory (runs no code in the process)
  tasks   Print the asyncio task tree, read from memory (runs no code in the process)

Run "pyreach-exec <command> --help" for the options of a command.`;

const LIST_USAGE = `Usage: pyreach-exec list [--json]

Lists the Python processes found in /proc: pid (and pid inside its namespace), user, Python version read
from the process's own _Py_DebugOffsets, free-threaded build or not, remote debugging enabled or not,
container or not, and its threads (the main thread is marked with *).

Options:
  --json    Print a JSON array of process objects instead of a table
  -h, --help`;

const RUN_USAGE = `Usage: pyreach-exec run --pid N (--code SRC | --file PATH) [options]

Makes process N run the code at its next safe point and prints what happened. The code runs in a fresh
namespace with "params" (from --params-json); its print() output is captured; set "result" to return a
value (JSON, or its repr).

Options:
  --pid N               Target process id (host pid)              (required)
  --thread auto|main    auto (the native backend's default): every thread of the main interpreter is
                        armed and the first to reach a safe point runs the code; main: the main thread
                        only (the sys backend's only choice)
  --tid T               Native thread id to run on (as listed by "list"); wins over --thread
  --wake                If nothing picked up within 0.3 s, interrupt one armed thread blocked in a system
                        call CPython retries after EINTR (epoll_wait, sleep, accept, read, select...) with
                        ptrace, so it picks up; never a lock wait or uninterruptible sleep (native, x86-64;
                        a C extension may not retry: see docs/security.md)
  --backend native|sys  native: our own PEP 768 writer (default); sys: spawn the target's interpreter
                        and call sys.remote_exec
  --code SRC            Python source to run
  --file PATH           Read the Python source from PATH
  --params-json JSON    A JSON object made available to the code as "params" (default {})
  --timeout SECONDS     How long the thread may take to reach a safe point (default 10)
  --budget SECONDS      Time budget of the code inside the target (default 30)
  --inline              Run on the thread that picks the request up instead of a fresh thread
  --lock-wait SECONDS   Wait this long for another run into the same process (agent or CLI) to finish,
                        then refuse with PENDING_CONFLICT (default 0: refuse at once)
  --lock-dir DIR        Per-target lock directory shared with the agent (default ${DEFAULTS.lockDir}); must
                        belong to root and be writable by nobody else
  --staging-dir DIR     Staging base inside the target's root (repeatable, in order of preference; default
                        /tmp, /var/tmp, /dev/shm)
  --json                Print one JSON object with the full result (strings as safe text)
  -h, --help

Output is printed with bytes that are not safe to show (control characters, ANSI escapes, invalid UTF-8)
as \\xNN. SIGINT/SIGTERM cancel the run: the code is stopped and the run ends "cancelled".

Exit status: 0 only if the code ran and succeeded; 1 otherwise; 2 for usage errors.`;

class UsageError extends Error {}

function positiveSeconds(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new UsageError(`--${name} must be a positive number of seconds, got ${JSON.stringify(v)}`);
  return Math.round(n * 1000);
}

function nonNegativeSeconds(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new UsageError(`--${name} must be a number of seconds (0 or more), got ${JSON.stringify(v)}`);
  return Math.round(n * 1000);
}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0)
    throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

async function cmdList(args: string[], out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    out(LIST_USAGE + '\n');
    return 0;
  }
  const procs = await discover();
  if (values.json) {
    out(JSON.stringify(procs, null, 2) + '\n');
    return 0;
  }
  const rows = [['PID', 'NSPID', 'USER', 'VERSION', 'FT', 'RDEBUG', 'CONTAINER', 'THREADS', 'COMMAND']];
  for (const p of procs) {
    rows.push([
      String(p.pid),
      String(p.nsPid),
      p.user ?? String(p.uid),
      p.pythonVersion ?? '?',
      p.freeThreaded === null ? '?' : p.freeThreaded ? 'yes' : 'no',
      p.remoteDebugEnabled === null ? '?' : p.remoteDebugEnabled ? 'on' : 'off',
      p.inContainer ? (p.container ?? 'yes') : '-',
      p.threads.map((t) => (t.main ? `${t.tid}*` : String(t.tid))).join(',') ||
        (p.inspectError ? `(${p.inspectError.slice(0, 40)})` : '-'),
      p.cmdline.join(' ').slice(0, 80),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
  return 0;
}

async function cmdRun(args: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      pid: { type: 'string' },
      tid: { type: 'string' },
      thread: { type: 'string' },
      wake: { type: 'boolean' },
      backend: { type: 'string' },
      code: { type: 'string' },
      file: { type: 'string' },
      'params-json': { type: 'string' },
      timeout: { type: 'string' },
      budget: { type: 'string' },
      inline: { type: 'boolean' },
      json: { type: 'boolean' },
      'lock-wait': { type: 'string' },
      'lock-dir': { type: 'string' },
      'staging-dir': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    out(RUN_USAGE + '\n');
    return 0;
  }
  const pid = positiveInt('pid', values.pid);
  if (pid === undefined) throw new UsageError('--pid is required');
  const tid = positiveInt('tid', values.tid);
  const thread = values.thread;
  if (thread !== undefined && thread !== 'auto' && thread !== 'main')
    throw new UsageError(`--thread must be "auto" or "main", got ${JSON.stringify(thread)}`);
  const backend = values.backend ?? 'native';
  if (backend !== 'native' && backend !== 'sys')
    throw new UsageError(`--backend must be "native" or "sys", got ${JSON.stringify(backend)}`);
  if ((values.code === undefined) === (values.file === undefined))
    throw new UsageError('give exactly one of --code or --file');
  let code: string;
  if (values.file !== undefined) {
    try {
      code = readFileSync(values.file, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read --file ${values.file}: ${(e as Error).message}`);
    }
  } else code = values.code!;
  let params: Record<string, unknown> = {};
  if (values['params-json'] !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(values['params-json']);
    } catch (e) {
      throw new UsageError(`--params-json is not valid JSON: ${(e as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new UsageError('--params-json must be a JSON object');
    params = parsed as Record<string, unknown>;
  }
  const lockWaitMs = nonNegativeSeconds('lock-wait', values['lock-wait']);
  const lockDir = values['lock-dir'];
  if (lockDir !== undefined && !lockDir.startsWith('/'))
    throw new UsageError(`--lock-dir must be an absolute path, got ${JSON.stringify(lockDir)}`);
  const stagingDirs = values['staging-dir'];
  for (const d of stagingDirs ?? [])
    if (!d.startsWith('/') || d.split('/').includes('..'))
      throw new UsageError(`--staging-dir must be an absolute path without "..", got ${JSON.stringify(d)}`);
  const ac = new AbortController();
  const onSig = (): void => ac.abort();
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    const r = await runInTarget({
      pid,
      tid,
      ...(thread ? { thread } : {}),
      wake: values.wake ?? false,
      backend,
      code,
      params,
      pickupTimeoutMs: positiveSeconds('timeout', values.timeout),
      budgetMs: positiveSeconds('budget', values.budget),
      inline: values.inline ?? false,
      signal: ac.signal,
      lockWaitMs,
      lockDir,
      stagingDirs,
      onOutput: values.json ? undefined : (chunk) => out(displayText(chunk)),
    });
    if (values.json) out(JSON.stringify(r) + '\n');
    else {
      if (r.result !== undefined) out(`result: ${displayText(JSON.stringify(r.result))}\n`);
      for (const w of r.woken ?? [])
        err(`pyreach-exec: woke thread ${w.tid} (${displayText(w.name ?? '?')}) blocked in ${w.syscall}\n`);
      if (r.pickedUpBy)
        err(
          `pyreach-exec: picked up by thread ${r.pickedUpBy.tid} (${displayText(r.pickedUpBy.name ?? '?')})\n`,
        );
      if (r.status !== 'succeeded') {
        err(
          `pyreach-exec: ${r.status}${r.errorCode ? ` (${r.errorCode})` : ''}: ${displayText(r.message ?? '')}\n`,
        );
        if (r.error?.traceback) {
          const tb = displayText(r.error.traceback);
          err(tb.endsWith('\n') ? tb : tb + '\n');
        }
      }
    }
    return r.status === 'succeeded' ? 0 : 1;
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
  }
}

export async function main(
  argv: string[],
  out = (s: string) => void process.stdout.write(s),
  err = (s: string) => void process.stderr.write(s),
): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      (cmd === undefined ? err : out)(USAGE + '\n');
      return cmd === undefined ? 2 : 0;
    }
    if (cmd === 'list') return await cmdList(rest, out);
    if (cmd === 'run') return await cmdRun(rest, out, err);
    if (cmd === 'stacks' || cmd === 'tasks') return await runInspectCommand(cmd, rest, out, err);
    throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      err(
        `pyreach-exec: ${(e as Error).message}\n${cmd === 'run' ? 'Run "pyreach-exec run --help" for usage.' : cmd === 'list' ? 'Run "pyreach-exec list --help" for usage.' : USAGE}\n`,
      );
      return 2;
    }
    err(`pyreach-exec: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] && /cli\.ts$|pyreach-exec(\.mjs)?$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(String(e) + '\n');
      process.exitCode = 1;
    },
  );
}
