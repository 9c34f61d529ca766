import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AgentErrorCode,
  Heartbeat,
  isRetryableAgentError,
  JobEvent,
  RETRYABLE_AGENT_ERROR_CODES,
} from './agent';
import { isRetryable } from './errors';
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
  for (const c of RETRYABLE_AGENT_ERROR_CODES) assert.ok(AgentErrorCode.options.includes(c));
  assert.deepEqual([...RETRYABLE_AGENT_ERROR_CODES].sort(), ['INTERNAL', 'SHUTTING_DOWN', 'UNAUTHENTICATED']);
  for (const c of RETRYABLE_AGENT_ERROR_CODES) assert.equal(isRetryable(c), true, `${c} in the one table`);
  for (const c of [
    'VALIDATION',
    'PAYLOAD_TOO_LARGE',
    'UNSTORABLE',
    'NOT_FOUND',
    'OUT_OF_ORDER',
    'RATE_LIMITED',
    'BUSY',
  ])
    assert.equal(isRetryableAgentError(c), false, c);
  // No answer, or a garbled one, decides nothing: the agent's own verdicts, retried.
  assert.equal(isRetryableAgentError('ACK_TIMEOUT'), true);
  assert.equal(isRetryableAgentError('BAD_ACK'), true);
});

test('a heartbeat without the oldest-item age (an older agent) still parses', () => {
  const hb = Heartbeat.parse({ at: new Date().toISOString(), outboxDepth: 3 });
  assert.equal(hb.outboxOldestAgeSeconds, null);
  assert.equal(
    Heartbeat.parse({ at: hb.at, outboxDepth: 3, outboxOldestAgeSeconds: 42 }).outboxOldestAgeSeconds,
    42,
  );
});

describe('protocol versions at the handshake', () => {
  test('v1 agents stay valid, v2 agents are accepted, an unknown version is not', async () => {
    const { AgentHandshake, AGENT_PROTOCOL_VERSION, jobVersionFor } = await import('./agent');
    assert.equal(AGENT_PROTOCOL_VERSION, 2);
    assert.equal(AgentHandshake.safeParse({ v: 1, agentId: 'agt_1' }).success, true);
    assert.equal(AgentHandshake.safeParse({ v: 2, agentId: 'agt_1' }).success, true);
    assert.equal(AgentHandshake.safeParse({ v: 3, agentId: 'agt_1' }).success, false);
    assert.equal(AgentHandshake.safeParse({ agentId: 'agt_1' }).success, false);
    assert.equal(jobVersionFor(1), 1);
    assert.equal(jobVersionFor(2), 2);
  });

  test('job:dispatch carries either envelope version', async () => {
    const { serverToAgentSchemas } = await import('./agent');
    const { generateKeyPairSync } = await import('node:crypto');
    const { codeHash, signJob, signJobV2, toV1 } = await import('./job');
    const k = generateKeyPairSync('ed25519');
    const p = {
      v: 2 as const,
      jobId: 'job_1',
      agentId: 'agt_1',
      requestId: 'req_1',
      target: { pid: 42, startTime: '1' },
      contentHash: 'a'.repeat(64),
      approvals: [],
      breakGlass: false,
      issuedAt: '2026-01-01T00:00:00.000Z',
      notAfter: '2026-01-01T00:05:00.000Z',
      action: 'exec' as const,
      kind: 'custom' as const,
      scriptId: null,
      code: 'x',
      codeHash: codeHash('x'),
      params: {},
      options: {
        inline: false,
        budgetSeconds: 1,
        pickupTimeoutSeconds: 1,
        backend: 'native' as const,
        thread: 'main' as const,
        wake: false,
      },
    };
    const v1 = toV1(p);
    assert.ok(v1.ok);
    for (const env of [
      signJobV2(p, k.privateKey, k.publicKey),
      signJob(v1.payload, k.privateKey, k.publicKey),
    ])
      assert.equal(serverToAgentSchemas['job:dispatch'].safeParse(env).success, true);
  });
});

test('results of inspection jobs carry their own codes and the report as the value', () => {
  for (const code of [
    'INSPECT_FAILED',
    'INSPECT_TIMEOUT',
    'INSPECT_INVALID',
    'INSPECT_DISCARDED',
    'INSPECT_INTERRUPTED',
  ]) {
    const ev = {
      ...base,
      type: 'result',
      result: { status: 'failed', errorCode: code, message: 'm', output: '' },
    };
    assert.equal(JobEvent.safeParse(ev).success, true, code);
  }
  const report = {
    pid: 42,
    status: 'complete',
    threads: [{ tid: 1, frames: [{ function: 'f', file: 'a.py', line: 1 }] }],
  };
  const ok = { ...base, type: 'result', result: { status: 'succeeded', output: '', result: report } };
  assert.equal(JobEvent.safeParse(ok).success, true);
  for (const code of ['UNSUPPORTED_VERSION', 'UNSUPPORTED_OPTION', 'POLICY_OPTED_OUT'])
    assert.equal(JobEvent.safeParse({ ...base, type: 'refused', code, message: 'm' }).success, true);
});
