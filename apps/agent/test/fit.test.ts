import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonBytes } from '@pyreach/protocol/common';
import { ExecResult } from '@pyreach/protocol/exec';
import { fitResult, RESULT_MAX_BYTES } from '../src/fit';

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
