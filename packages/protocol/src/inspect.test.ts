import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StacksReport, TasksReport } from './inspect';
import { encodeBytes } from './text';

const thread = {
  tid: 7,
  hostTid: 1007,
  name: 'Worker-A',
  main: false,
  interpreterId: 0,
  holdsGil: false,
  state: {
    status: 'blocked',
    procState: 'S',
    syscall: { number: 202, name: 'futex' },
    wchan: 'futex_do_wait',
    uninterruptible: false,
    stable: true,
  },
  frames: [{ function: 'a_inner', file: '/app/x.py', line: 23 }],
  truncated: false,
  error: null,
};
const stacks = {
  pid: 1234,
  nsPid: 1,
  pythonVersion: '3.14.10',
  status: 'complete',
  readAt: '2026-12-02T05:36:39.573Z',
  durationMs: 3.2,
  bytesRead: 9691,
  errors: [],
  remoteDebugEnabled: true,
  interpreters: [{ id: 0, threads: 1, remoteDebugEnabled: true }],
  threads: [thread],
};

describe('inspection report shapes', () => {
  it('accept what the engine produces, names from the target as safe text', () => {
    assert.deepEqual(StacksReport.parse(stacks), stacks);
    const hostile = encodeBytes(Buffer.from('\x1b[31m\x00\xff'));
    const withHostile = {
      ...stacks,
      threads: [{ ...thread, frames: [{ function: hostile, file: hostile, line: null }] }],
    };
    assert.equal(StacksReport.safeParse(withHostile).success, true);
  });

  it('refuse raw control characters, NULs and lone surrogates from a target, unknown codes and unbounded lists', () => {
    for (const bad of ['\x1b[31m', 'a\x00b', '\ud800']) {
      const r = StacksReport.safeParse({ ...stacks, threads: [{ ...thread, name: bad }] });
      assert.equal(r.success, false, JSON.stringify(bad));
    }
    assert.equal(
      StacksReport.safeParse({ ...stacks, errors: [{ code: 'SOMETHING_ELSE', message: 'x' }] }).success,
      false,
    );
    const many = Array.from({ length: 4097 }, () => thread.frames[0]);
    assert.equal(
      StacksReport.safeParse({ ...stacks, threads: [{ ...thread, frames: many }] }).success,
      false,
    );
  });

  it('take task ids only as the hex addresses the reader prints', () => {
    const task = {
      id: '0x7fd9849307d0',
      name: 'leaf',
      tid: 1,
      interpreterId: 0,
      running: false,
      stack: [],
      truncated: false,
      awaitedBy: [{ id: '0x7fd9854c7c20', task: true, name: 'worker-2' }],
      error: null,
    };
    const report = {
      ...stacks,
      asyncio: { loaded: true, module: '/usr/lib/python3.14/lib-dynload/_asyncio.so' },
      tasks: [task],
      futures: [],
    };
    assert.equal(TasksReport.safeParse(report).success, true);
    assert.equal(
      TasksReport.safeParse({ ...report, tasks: [{ ...task, id: '140572208859088' }] }).success,
      false,
    );
  });
});
