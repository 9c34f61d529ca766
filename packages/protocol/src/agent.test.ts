import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AgentErrorCode,
  Heartbeat,
  isRetryableAgentError,
  JobEvent,
  RETRYABLE_AGENT_ERROR_CODES,
} from './agent';
import { encodeBytes } from './text';

const base = { jobId: 'job_1', seq: 1, at: new Date().toISOString() };

describe('job events', () => {
  test('refuse output, result and refusal text that is not safe text (a sender that skipped the encoding)', () => {
    const bad = [
      { ...base, type: 'output', chunk: 'a\u0000b' },
      { ...base, type: 'result', result: { status: 'succeeded', output: 'x\ud800' } },
      { ...base, type: 'result', result: { status: 'succeeded', output: '', result: { k: 'v\u0000' } } },
      { ...base, type: 'result', result: { status: 'succeeded', output: '', result: { 'k\u0000': 1 } } },
      { ...base, type: 'result', result: { status: 'failed', output: '', message: '\u001b[2J' } },
      {
        ...base,
        type: 'result',
        result: { status: 'failed', output: '', error: { type: 'E', message: 'm', traceback: '\u0000' } },
      },
      {
        ...base,
        type: 'result',
        result: { status: 'failed', output: '', thread: { tid: 1, name: '\u0000' } },
      },
      { ...base, type: 'refused', code: 'X', message: 'a\u0000' },
    ];
    for (const ev of bad) assert.equal(JobEvent.safeParse(ev).success, false, JSON.stringify(ev));
  });

  test('accept the same text once encoded, a REPORT_REFUSED result and a queued event', () => {
    const good = [
      { ...base, type: 'output', chunk: encodeBytes(Uint8Array.of(0x61, 0, 0xff)) },
      {
        ...base,
        type: 'result',
        result: {
          status: 'failed',
          errorCode: 'REPORT_REFUSED',
          message: 'refused',
          output: '',
          refusedReport: { seq: 1, type: 'output', code: 'VALIDATION', message: 'bad' },
        },
      },
      { ...base, type: 'result', result: { status: 'cancelled', errorCode: 'CANCELLED', output: 'so far' } },
      { ...base, type: 'queued', behindJobId: 'job_0', ahead: 2 },
    ];
    for (const ev of good) assert.equal(JobEvent.safeParse(ev).success, true, JSON.stringify(ev));
  });
});

test('only codes the control plane sends are retried, and all of them are AgentErrorCodes', () => {
  for (const c of RETRYABLE_AGENT_ERROR_CODES.options) assert.ok(AgentErrorCode.options.includes(c));
  assert.deepEqual([...RETRYABLE_AGENT_ERROR_CODES.options].sort(), [
    'INTERNAL',
    'SHUTTING_DOWN',
    'UNAUTHENTICATED',
  ]);
  for (const c of ['VALIDATION', 'PAYLOAD_TOO_LARGE', 'NOT_FOUND', 'OUT_OF_ORDER', 'RATE_LIMITED', 'BUSY'])
    assert.equal(isRetryableAgentError(c), false, c);
});

test('a heartbeat without the oldest-item age (an older agent) still parses', () => {
  const hb = Heartbeat.parse({ at: new Date().toISOString(), outboxDepth: 3 });
  assert.equal(hb.outboxOldestAgeSeconds, null);
  assert.equal(
    Heartbeat.parse({ at: hb.at, outboxDepth: 3, outboxOldestAgeSeconds: 42 }).outboxOldestAgeSeconds,
    42,
  );
});
