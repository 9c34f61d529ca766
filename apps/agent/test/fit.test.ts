import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonBytes } from '@pyreach/protocol/common';
import { ExecResult } from '@pyreach/protocol/exec';
import { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { fitReport, fitResult, REPORT_MAX_BYTES, RESULT_MAX_BYTES } from '../src/fit';

test('a result that fits is reported unchanged', () => {
  const r: ExecResult = { status: 'succeeded', output: 'hello\n', result: { a: 1 } };
  assert.equal(fitResult(r), r);
});

test('huge output full of characters JSON must escape is cut to fit, visibly', () => {
  const r: ExecResult = { status: 'succeeded', output: '\u0001'.repeat(1024 * 1024), result: 1 };
  assert.ok(jsonBytes(r) > RESULT_MAX_BYTES);
  const f = fitResult(r);
  assert.ok(jsonBytes(f) <= RESULT_MAX_BYTES);
  assert.equal(f.outputTruncated, true);
  assert.match(f.output, /output truncated by the agent/);
  assert.equal(f.result, 1);
  assert.equal(ExecResult.safeParse(f).success, true);
});

test('a huge result value is replaced by a note instead of stranding the job', () => {
  const r: ExecResult = { status: 'succeeded', output: '', result: 'x'.repeat(5 * 1024 * 1024) };
  const f = fitResult(r);
  assert.ok(jsonBytes(f) <= RESULT_MAX_BYTES);
  assert.match(String(f.result), /result too large to report/);
  assert.match(f.message ?? '', /too large to report and was dropped/);
  assert.equal(f.status, 'succeeded');
});

// ---- inspection reports ---------------------------------------------------------------------------------

const thread = (i: number, frames: number, fn = (j: number) => `module.function_${j}`) => ({
  tid: 1000 + i,
  hostTid: 1000 + i,
  name: `worker-${i}`,
  main: i === 0,
  interpreterId: 0,
  holdsGil: false,
  state: null,
  frames: Array.from({ length: frames }, (_, j) => ({
    function: fn(j),
    file: `/srv/app/pkg/module_${j % 17}.py`,
    line: j + 1,
  })),
  truncated: false,
  error: null,
});

function stacks(threads: ReturnType<typeof thread>[]): StacksReport {
  return {
    pid: 4242,
    nsPid: 4242,
    pythonVersion: '3.14.0',
    status: 'complete',
    readAt: new Date().toISOString(),
    durationMs: 10,
    bytesRead: 1,
    errors: [],
    remoteDebugEnabled: true,
    interpreters: [{ id: 0, threads: threads.length, remoteDebugEnabled: true }],
    threads,
  };
}

test('a report that fits is kept as it is', () => {
  const r = stacks([thread(0, 3)]);
  assert.deepEqual(fitReport(r), { report: r, note: null });
});

test('a stacks report of thousands of deep threads is cut to one message: every thread kept, innermost frames first', () => {
  const r = stacks(Array.from({ length: 2000 }, (_, i) => thread(i, 200)));
  assert.ok(jsonBytes(r) > 10 * REPORT_MAX_BYTES, String(jsonBytes(r)));
  const { report, note } = fitReport(r);
  assert.ok(jsonBytes(report) <= REPORT_MAX_BYTES, String(jsonBytes(report)));
  assert.equal(StacksReport.safeParse(report).success, true);
  assert.equal(report.status, 'partial');
  assert.equal(report.threads.length, 2000);
  const k = report.threads[0]!.frames.length;
  assert.ok(k >= 1 && k < 200, String(k));
  for (const t of report.threads) {
    assert.equal(t.truncated, true);
    assert.deepEqual(t.frames, r.threads.find((x) => x.tid === t.tid)!.frames.slice(0, k));
  }
  assert.equal(report.errors.at(-1)!.code, 'TRUNCATED');
  assert.match(note ?? '', new RegExp(`at most ${k} frame\\(s\\) per thread kept \\(innermost first`));
  // And the whole result it becomes fits the wire untouched.
  const result = fitResult({ status: 'succeeded', output: '', result: report as never, message: note! });
  assert.equal(result.result, report as never);
});

test('when even one frame per thread is too much, the last threads are left out and it says how many', () => {
  const huge = (j: number) => `f${j}_` + 'x'.repeat(16_000);
  const r = stacks(Array.from({ length: 600 }, (_, i) => thread(i, 2, huge)));
  const { report, note } = fitReport(r);
  assert.ok(jsonBytes(report) <= REPORT_MAX_BYTES);
  assert.equal(StacksReport.safeParse(report).success, true);
  assert.ok(report.threads.length > 10 && report.threads.length < 600, String(report.threads.length));
  assert.equal(report.threads[0]!.main, true, 'the main thread (first) is kept');
  assert.match(note ?? '', new RegExp(`${600 - report.threads.length} of 600 threads left out`));
});

test('a tasks report with too many tasks is cut the same way and still parses', () => {
  const frames = (n: number) =>
    Array.from({ length: n }, (_, j) => ({ function: `coro_${j}`, file: '/srv/app/tasks.py', line: j }));
  const r: TasksReport = {
    pid: 4242,
    nsPid: 4242,
    pythonVersion: '3.14.0',
    status: 'complete',
    readAt: new Date().toISOString(),
    durationMs: 1,
    bytesRead: 1,
    errors: Array.from({ length: 64 }, () => ({ code: 'TORN' as const, message: 'x' })),
    asyncio: { loaded: true, module: '_asyncio' },
    tasks: Array.from({ length: 8000 }, (_, i) => ({
      id: `0x${(0x1000 + i).toString(16)}`,
      name: `task-${i}`,
      tid: 1,
      interpreterId: 0,
      running: false,
      stack: frames(40),
      truncated: false,
      awaitedBy: [{ id: '0x1', task: true, name: 'Task-1' }],
      error: null,
    })),
    futures: [{ id: '0x2', awaitedBy: [{ id: '0x1', task: true, name: 'Task-1' }] }],
  };
  const { report } = fitReport(r);
  assert.ok(jsonBytes(report) <= REPORT_MAX_BYTES);
  assert.equal(TasksReport.safeParse(report).success, true);
  assert.equal(report.errors.length, 64, 'the errors bound holds: the note replaced the last one');
  assert.equal(report.errors.at(-1)!.code, 'TRUNCATED');
  assert.equal(report.status, 'partial');
});
