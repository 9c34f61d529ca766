import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StacksReport, TasksReport, type StackThread } from '@pyreach/protocol/inspect';
import { decodeToBytes, isSafeText } from '@pyreach/protocol/text';
import { readStacks, readTasks, readThreadStates, threadFacts } from '../src/index';
import {
  ensureTestUser,
  pythonPath,
  startNonPython,
  startPython,
  type PyTarget,
  type StartOptions,
} from '../../../test/support/python';
import { sleep } from './helpers';

before(() => {
  pythonPath();
  ensureTestUser();
});

const live = new Set<PyTarget>();
after(async () => {
  for (const t of live) await t.kill();
});

async function start(script: string, opts: StartOptions = {}): Promise<PyTarget> {
  const t = await startPython(script, opts);
  live.add(t);
  return t;
}

async function stop(t: PyTarget): Promise<void> {
  live.delete(t);
  await t.kill();
}

/** Host path of a file the target wrote beside its script. */
function besideScript(t: PyTarget, name: string): string {
  const dir = dirname(t.scriptInTarget);
  return (t.rootOnHost === '/' ? '' : t.rootOnHost) + `${dir}/${name}`;
}

async function waitForThreads(pid: number, n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (readdirSync(`/proc/${pid}/task`).length === n) return;
    await sleep(10);
  }
  throw new Error(`process ${pid} never had exactly ${n} threads`);
}

interface ViewFrame {
  function: string;
  file: string;
  line: number;
}
interface StacksView {
  threads: { tid: number; name: string; main: boolean; frames: ViewFrame[]; extracted: ViewFrame[] }[];
}

/**
 * Start stacks_known.py and wait until only its three parked threads remain. A target of another user
 * writes its view into a directory of its own (it cannot write beside its root-owned script).
 */
async function knownStacksTarget(opts: StartOptions = {}): Promise<{ t: PyTarget; view: StacksView }> {
  let viewPath: string | null = null;
  if (opts.user) {
    const dir = mkdtempSync(join(tmpdir(), 'pyreach-inspect-'));
    chmodSync(dir, 0o777);
    viewPath = join(dir, 'view.json');
  }
  const t = await start('stacks_known.py', viewPath ? { ...opts, args: [viewPath] } : opts);
  await waitForThreads(t.pid, 3);
  const view = JSON.parse(readFileSync(viewPath ?? besideScript(t, 'view.json'), 'utf8')) as StacksView;
  if (viewPath) rmSync(dirname(viewPath), { recursive: true, force: true });
  return { t, view };
}

const EXPECTED_SYSCALLS: Record<string, string[]> = {
  MainThread: ['select', 'pselect6'],
  'Worker-A': ['futex'],
  'Sleeper-B': ['clock_nanosleep', 'nanosleep'],
};

/** The report says what the interpreter itself said (sys._current_frames + traceback.extract_stack). */
function assertMatchesView(report: StacksReport, view: StacksView): void {
  StacksReport.parse(report);
  assert.equal(report.status, 'complete', JSON.stringify(report.errors));
  assert.equal(report.threads.length, 3, JSON.stringify(report.threads.map((t) => t.tid)));
  const byTid = new Map(report.threads.map((t) => [t.tid, t]));
  for (const v of view.threads) {
    const t = byTid.get(v.tid);
    assert.ok(t, `thread ${v.tid} (${v.name}) missing`);
    assert.equal(t.error, null);
    assert.deepEqual(
      t.frames,
      v.frames.map(({ function: fn, file, line }) => ({ function: fn, file, line })),
      `stack of ${v.name}`,
    );
    assert.deepEqual(
      t.frames.map((f) => [f.file, f.line]),
      v.extracted.map((f) => [f.file, f.line]),
      `traceback.extract_stack of ${v.name}`,
    );
    assert.equal(t.main, v.main, `main flag of ${v.name}`);
    assert.equal(t.interpreterId, 0);
    // CPython 3.14's threading names the OS thread after the Python thread.
    if (!v.main) assert.equal(t.name, v.name);
    assert.ok(t.state, `state of ${v.name}`);
    assert.equal(t.state.status, 'blocked', `${v.name}: ${JSON.stringify(t.state)}`);
    assert.ok(
      EXPECTED_SYSCALLS[v.name]!.includes(t.state.syscall?.name ?? ''),
      `${v.name}: ${JSON.stringify(t.state)}`,
    );
    assert.equal(t.state.stable, true);
    assert.equal(t.holdsGil, false);
  }
  assert.equal(report.threads[0]!.main, true, 'main thread first');
}

function contextSwitches(pid: number): string {
  return readdirSync(`/proc/${pid}/task`)
    .sort()
    .map((tid) => {
      const s = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      return `${tid}:${/^voluntary_ctxt_switches:\s*(\d+)/m.exec(s)?.[1]}/${/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(s)?.[1]}`;
    })
    .join(' ');
}

describe('stacks read from outside', () => {
  it('equal what sys._current_frames() and traceback.extract_stack report inside a program whose three threads are all blocked, without waking or pausing any of them', async () => {
    const { t, view } = await knownStacksTarget();
    try {
      const before = contextSwitches(t.pid);
      const out = t.stdout().length;
      const report = await readStacks({ pid: t.pid });
      assertMatchesView(report, view);
      // A thread woken (signal, ptrace stop, injected code) would have been switched in: none was.
      assert.equal(contextSwitches(t.pid), before);
      assert.equal(t.stdout().length, out, 'the target printed nothing');
      assert.ok(report.bytesRead > 0 && report.bytesRead < 1024 * 1024, String(report.bytesRead));
    } finally {
      await stop(t);
    }
  });

  it('reads a container-style target (own pid and mount namespace): tids as the target sees them', async () => {
    const { t, view } = await knownStacksTarget({ style: 'container' });
    try {
      const report = await readStacks({ pid: t.pid });
      assertMatchesView(report, view);
      assert.equal(report.nsPid, 1);
      const main = report.threads.find((x) => x.main)!;
      assert.equal(main.tid, 1);
      assert.equal(main.hostTid, t.pid);
    } finally {
      await stop(t);
    }
  });

  it('reads a target whose remote debugging is disabled (PYTHON_DISABLE_REMOTE_DEBUG) and says it is disabled', async () => {
    const { t, view } = await knownStacksTarget({ disableRemoteDebug: true });
    try {
      const report = await readStacks({ pid: t.pid });
      assertMatchesView(report, view);
      assert.equal(report.remoteDebugEnabled, false);
      assert.deepEqual(report.interpreters, [{ id: 0, threads: 3, remoteDebugEnabled: false }]);
    } finally {
      await stop(t);
    }
  });

  it('reads an interpreter launched through the dynamic loader, owned by an unprivileged user', async () => {
    const { t, view } = await knownStacksTarget({ style: 'loader', user: true });
    try {
      assertMatchesView(await readStacks({ pid: t.pid }), view);
    } finally {
      await stop(t);
    }
  });

  it('shows a subinterpreter: the OS thread that entered it has a stack in each interpreter', async () => {
    const t = await start('subinterp.py');
    try {
      const ready = JSON.parse(t.readyLine!.slice('READY '.length)) as {
        lines: Record<string, number>;
        tid: number;
      };
      const report = await readStacks({ pid: t.pid });
      StacksReport.parse(report);
      assert.equal(report.status, 'complete', JSON.stringify(report.errors));
      assert.deepEqual(
        report.interpreters.map((i) => [i.id, i.threads]),
        [
          [0, 2],
          [1, 1],
        ],
      );
      const inSub = report.threads.find((x) => x.interpreterId === 1)!;
      assert.equal(inSub.tid, ready.tid);
      assert.deepEqual(inSub.frames, [
        { function: 'sub_inner', file: '<script>', line: ready.lines.sub_inner },
        { function: 'sub_outer', file: '<script>', line: ready.lines.sub_outer },
        { function: '<module>', file: '<script>', line: ready.lines.sub_module },
      ]);
      const inMain = report.threads.find((x) => x.interpreterId === 0 && x.tid === ready.tid)!;
      assert.equal(inMain.frames[0]!.function, 'Interpreter.exec');
      assert.equal(inMain.name, 'sub-runner');
    } finally {
      await stop(t);
    }
  });

  it('reads a thread that runs bytecode flat out and reports it running', async () => {
    const t = await start('busy.py');
    try {
      let running = 0;
      let gil = 0;
      for (let i = 0; i < 20; i++) {
        const r = await readStacks({ pid: t.pid });
        assert.equal(r.status, 'complete', JSON.stringify(r));
        assert.equal(r.threads.length, 1);
        assert.equal(r.threads[0]!.frames.at(-1)!.function, '<module>');
        if (r.threads[0]!.state?.status === 'running') running++;
        if (r.threads[0]!.holdsGil) gil++;
      }
      assert.ok(running >= 10, `running in only ${running} of 20 looks`);
      assert.ok(gil >= 15, `the only thread held the GIL in only ${gil} of 20 looks`);
    } finally {
      await stop(t);
    }
  });

  it('fails honestly for a process that is not Python and for one that is gone', async () => {
    const np = startNonPython();
    try {
      await sleep(50);
      const r = await readStacks({ pid: np.pid });
      assert.equal(r.status, 'failed');
      assert.equal(r.errors[0]!.code, 'NOT_PYTHON');
      StacksReport.parse(r);
    } finally {
      np.kill();
    }
    const gone = await readStacks({ pid: 0x3ffffff });
    assert.equal(gone.status, 'failed');
    assert.equal(gone.errors[0]!.code, 'TARGET_GONE');
  });
});

describe('threads as facts', () => {
  it('names each thread from the kernel and reads its state on demand, twice', async () => {
    const { t, view } = await knownStacksTarget();
    try {
      const facts = threadFacts({ pid: t.pid });
      for (const v of view.threads.filter((x) => !x.main))
        assert.equal(facts.find((f) => f.tid === v.tid)?.name, v.name);
      const states = await readThreadStates({ pid: t.pid, intervalMs: 30 });
      const worker = view.threads.find((v) => v.name === 'Worker-A')!;
      const s = states.find((x) => x.tid === worker.tid)!.state!;
      assert.equal(s.status, 'blocked');
      assert.equal(s.syscall?.name, 'futex');
      assert.equal(s.stable, true);
      assert.equal(s.uninterruptible, false);
      assert.ok(s.wchan === null || isSafeText(s.wchan));
    } finally {
      await stop(t);
    }
  });
});

interface TasksView {
  tasks: {
    id: string;
    name: string;
    stack: ViewFrame[];
    awaitedBy: { id: string; task: boolean; name: string | null }[];
  }[];
  futures: { id: string; awaitedBy: { id: string; task: boolean; name: string | null }[] }[];
}

const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => a.id.localeCompare(b.id));

describe('asyncio tasks read from outside', () => {
  it("equal what asyncio reports inside (names, coroutine stacks, awaited-by through tasks and a future) and what CPython's own _remote_debugging reads", async () => {
    const t = await start('asyncio_known.py');
    try {
      const view = JSON.parse(readFileSync(besideScript(t, 'view.json'), 'utf8')) as TasksView;
      const out = t.stdout().length;
      const report = await readTasks({ pid: t.pid });
      TasksReport.parse(report);
      assert.equal(report.status, 'complete', JSON.stringify(report.errors));
      assert.equal(report.asyncio.loaded, true);
      assert.match(report.asyncio.module!, /_asyncio\.cpython-314/);
      assert.deepEqual(
        byId(report.tasks).map((x) => ({
          id: x.id,
          name: x.name,
          stack: x.stack,
          awaitedBy: byId(x.awaitedBy),
        })),
        byId(view.tasks).map((x) => ({ ...x, awaitedBy: byId(x.awaitedBy) })),
      );
      assert.deepEqual(byId(report.futures), byId(view.futures));
      assert.equal(view.futures.length, 1);
      assert.ok(
        report.tasks.every((x) => x.tid === t.pid && x.interpreterId === 0 && !x.running && !x.error),
      );
      assert.equal(t.stdout().length, out, 'the target printed nothing');

      // CPython's own reader, run from the provisioned interpreter (a test oracle, not the engine's path).
      const oracle = JSON.parse(
        execFileSync(
          pythonPath(),
          [
            '-I',
            '-c',
            `import json, _remote_debugging as r
out = []
for th in r.RemoteUnwinder(${t.pid}).get_all_awaited_by():
    for ti in th.awaited_by:
        out.append({"id": hex(ti.task_id), "name": ti.task_name, "tid": th.thread_id,
          "stack": [{"function": f.funcname, "file": f.filename, "line": f.lineno} for c in ti.coroutine_stack for f in c.call_stack],
          "awaitedBy": sorted(hex(c.task_name) for c in ti.awaited_by)})
print(json.dumps(out))`,
          ],
          { encoding: 'utf8' },
        ),
      ) as { id: string; name: string; tid: number; stack: ViewFrame[]; awaitedBy: string[] }[];
      assert.deepEqual(
        byId(report.tasks).map((x) => ({
          id: x.id,
          name: x.name,
          tid: x.tid,
          stack: x.stack,
          awaitedBy: x.awaitedBy.map((w) => w.id).sort(),
        })),
        byId(oracle),
      );
    } finally {
      await stop(t);
    }
  });

  it('shows the running task with the part of its thread stack it is executing', async () => {
    const t = await start('asyncio_busy.py');
    try {
      const r = await readTasks({ pid: t.pid });
      assert.equal(r.status, 'complete', JSON.stringify(r.errors));
      const spinner = r.tasks.find((x) => x.name === 'spinner')!;
      assert.equal(spinner.running, true);
      // crunch() spends part of each loop outside inner_crunch (the sum is C and quick): either is the moment.
      const names = spinner.stack.map((f) => f.function);
      assert.deepEqual(names[0] === 'inner_crunch' ? names.slice(1) : names, ['crunch', 'helper', 'spin']);
      assert.deepEqual(
        spinner.awaitedBy.map((w) => w.name),
        ['Task-1'],
      );
      assert.equal(r.tasks.find((x) => x.name === 'idle')!.running, false);
    } finally {
      await stop(t);
    }
  });

  it("finds asyncio's offsets through the kernel's link to the mapped file, after that file was deleted and its path made a FIFO", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pyreach-asyncio-'));
    const lib = readdirSync(join(dirname(pythonPath()), '../lib/python3.14/lib-dynload')).find((n) =>
      n.startsWith('_asyncio.'),
    )!;
    const copy = join(dir, lib);
    copyFileSync(join(dirname(pythonPath()), '../lib/python3.14/lib-dynload', lib), copy);
    const t = await start('asyncio_known.py', { env: { PYTHONPATH: dir } });
    try {
      assert.match(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), new RegExp(`${dir}/_asyncio`));
      rmSync(copy);
      execFileSync('mkfifo', [copy]); // a root reader that opened this path would hang here
      const r = await readTasks({ pid: t.pid });
      assert.equal(r.status, 'complete', JSON.stringify(r.errors));
      assert.equal(r.asyncio.module, copy);
      const view = JSON.parse(readFileSync(besideScript(t, 'view.json'), 'utf8')) as TasksView;
      assert.deepEqual(r.tasks.map((x) => x.name).sort(), view.tasks.map((x) => x.name).sort());
    } finally {
      await stop(t);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports no tasks, completely, for a Python process that never loaded asyncio', async () => {
    const t = await start('idle.py');
    try {
      const r = await readTasks({ pid: t.pid });
      TasksReport.parse(r);
      assert.equal(r.status, 'complete');
      assert.deepEqual([r.asyncio.loaded, r.tasks], [false, []]);
    } finally {
      await stop(t);
    }
  });

  it('reads the tasks of a container-style target', async () => {
    const t = await start('asyncio_known.py', { style: 'container' });
    try {
      const view = JSON.parse(readFileSync(besideScript(t, 'view.json'), 'utf8')) as TasksView;
      const r = await readTasks({ pid: t.pid });
      assert.equal(r.status, 'complete', JSON.stringify(r.errors));
      assert.deepEqual(r.tasks.map((x) => x.name).sort(), view.tasks.map((x) => x.name).sort());
      assert.ok(r.tasks.every((x) => x.tid === 1));
    } finally {
      await stop(t);
    }
  });
});

describe('a hostile target that scribbles over its own frames, code objects and strings', () => {
  let t: PyTarget;
  let control: string;
  let victimTid: number;
  before(async () => {
    t = await start('scribbler.py');
    control = besideScript(t, 'control.txt');
    victimTid = Number(t.readyLine!.split(' ')[2]);
  });
  after(async () => {
    await stop(t);
  });

  let current = -1;
  async function mode(n: number): Promise<void> {
    if (n === current) return; // the target acknowledges changes only
    current = n;
    const mark = t.stdout().length;
    writeFileSync(control, `mode ${n}`);
    await t.waitForStdout(`MODE ${n}`, 10_000, mark);
  }

  async function read(): Promise<{ report: StacksReport; victim: StackThread; wallMs: number }> {
    const t0 = performance.now();
    const report = await readStacks({ pid: t.pid, states: false, timeoutMs: 2000 });
    const wallMs = performance.now() - t0;
    StacksReport.parse(report);
    const bystander = report.threads.find((x) => x.name === 'bystander')!;
    assert.equal(bystander.error, null, 'the untouched thread reads clean');
    assert.deepEqual(
      bystander.frames.slice(0, 1).map((f) => f.function),
      ['bystander'],
    );
    return { report, victim: report.threads.find((x) => x.tid === victimTid)!, wallMs };
  }

  const innerFrames = ['Condition.wait', 'Event.wait', 'victim_inner', 'victim_middle'];

  it('gives the intact stack when it is clean', async () => {
    await mode(0);
    const { report, victim } = await read();
    assert.equal(report.status, 'complete');
    assert.deepEqual(victim.frames.map((f) => f.function).slice(0, 5), [...innerFrames, 'victim_outer']);
  });

  for (const [n, what, code, framesBefore] of [
    [1, 'a frame that is its own caller', 'CYCLE', innerFrames],
    [2, 'a frame chain that loops back two frames', 'CYCLE', [...innerFrames, 'victim_outer']],
    [3, 'a caller pointer into unmapped memory', 'OUT_OF_BOUNDS', innerFrames],
    [
      4,
      "a caller pointer into a mapped file that is not CPython's (never touched: it could block)",
      'OUT_OF_BOUNDS',
      innerFrames,
    ],
    [5, 'a frame whose code is a str', 'CORRUPT', innerFrames.slice(0, 2)],
    [9, 'a frame with an impossible owner', 'CORRUPT', innerFrames.slice(0, 2)],
  ] as const) {
    it(`stops at ${what} with ${code}, keeping the frames before it`, async () => {
      await mode(n);
      const { report, victim, wallMs } = await read();
      assert.equal(report.status, 'partial');
      assert.equal(victim.error?.code, code, JSON.stringify(victim.error));
      assert.deepEqual(
        victim.frames.map((f) => f.function),
        framesBefore,
      );
      assert.ok(wallMs < 1000, `${wallMs} ms`);
    });
  }

  it('cuts a function name that claims a billion characters, reading only its bound', async () => {
    await mode(6);
    const { victim, report } = await read();
    const fn = victim.frames[2]!.function;
    assert.match(fn, /^x{1024}…\(cut, 1000000000 characters\)$/);
    assert.ok(report.bytesRead < 64 * 1024, String(report.bytesRead));
    // The same length of ESC bytes: every one becomes an escape, and the report still fits its schema.
    await mode(13);
    const esc = await read();
    const name = esc.victim.frames[2]!.function;
    assert.equal(Buffer.from(decodeToBytes(name)).subarray(0, 1024).toString('latin1'), '\x1b'.repeat(1024));
    assert.ok(isSafeText(name));
  });

  it('refuses a line table claiming 2**40 bytes (no line, TRUNCATED) and a garbage one (CORRUPT), keeping the whole stack', async () => {
    for (const [n, code] of [
      [7, 'TRUNCATED'],
      [8, 'CORRUPT'],
    ] as const) {
      await mode(n);
      const { victim, report } = await read();
      assert.equal(victim.error?.code, code);
      assert.equal(victim.frames[2]!.function, 'victim_inner');
      assert.equal(victim.frames[2]!.line, null);
      assert.equal(victim.frames.at(-1)!.function, 'Thread._bootstrap');
      assert.ok(report.bytesRead < 64 * 1024, String(report.bytesRead));
    }
    await mode(10);
    const { victim } = await read();
    assert.equal(victim.error?.code, 'CORRUPT');
    assert.match(victim.error!.message, /instruction pointer of victim_inner points outside its code/);
  });

  it('turns a file name of control characters, a NUL and a lone surrogate into safe text, losslessly', async () => {
    await mode(11);
    const { victim } = await read();
    const file = victim.frames[2]!.file;
    assert.ok(isSafeText(file));
    assert.equal(
      Buffer.from(decodeToBytes(file)).toString('hex'),
      Buffer.concat([
        Buffer.from('\x1b[31mred\x00nul'),
        Buffer.from([0xed, 0xa0, 0x80]), // U+D800 as its (WTF-8) bytes
        Buffer.from('lone'),
      ]).toString('hex'),
    );
  });

  it('answers every read within its time budget, with the bystander intact, while garbage is written into the victim every millisecond', async () => {
    await mode(12);
    const codes = new Set<string>();
    const until = performance.now() + 3000;
    let reads = 0;
    let slowest = 0;
    while (performance.now() < until) {
      const { victim, report, wallMs } = await read();
      slowest = Math.max(slowest, wallMs);
      assert.ok(report.bytesRead <= 64 * 1024 * 1024);
      codes.add(victim.error?.code ?? 'none');
      reads++;
    }
    assert.ok(reads >= 20, `${reads} reads`);
    assert.ok(slowest < 2500, `slowest read ${slowest} ms`);
    assert.ok(
      [...codes].some((c) => c !== 'none'),
      [...codes].join(),
    );
    assert.equal(t.isRunning(), true);
    await mode(0);
  });

  it('stops at its byte budget with what it read so far', async () => {
    await mode(0);
    const r = await readStacks({ pid: t.pid, states: false, maxBytes: 6000 });
    StacksReport.parse(r);
    assert.equal(r.status, 'partial');
    assert.equal(r.errors.at(-1)?.code, 'BUDGET_EXCEEDED');
    assert.ok(r.bytesRead <= 6000, String(r.bytesRead));
    assert.ok(r.threads.length >= 1 && r.threads[0]!.frames.length >= 1, 'what was read before is kept');
  });
});
