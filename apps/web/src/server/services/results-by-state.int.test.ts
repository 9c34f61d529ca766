/**
 * Issue 16 item 4 (results by state) on real databases (PGlite and PostgreSQL, with the migration's CHECK): a
 * request whose targets partly succeeded ends `partially_succeeded`, its detail carries per-state counts in the
 * protocol's shape, and a late real result corrects it like a `failed` one. The detail carries previews, not
 * whole outputs (req-scale, with the migration's digest trigger): outputs of 200 KiB each come back as at most
 * OUTPUT_PREVIEW_BYTES each, marked as previews, with the sha256 of the whole stored output; identical big outputs
 * group together and ones differing only after the preview do not; the download still has every byte.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import type { JobEvent, ReportedResult } from '@pyreach/protocol/agent';
import { RequestDetail } from '@pyreach/protocol/api';
import { OUTPUT_PREVIEW_BYTES, groupIdenticalOutcomes } from '@pyreach/protocol/results';
import { EXECUTION } from '@pyreach/protocol/states';
import { encodeBytes } from '@pyreach/protocol/text';
import { verifyAuditChain } from './audit';
import * as executions from './executions';
import * as requests from './requests';
import { describeEachDatabase, requestWorld, testKeyPair } from '../../../../../test/support/services';

const ATTEST = testKeyPair();
const KIB = 1024;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const at = () => new Date().toISOString();
const result = (jobId: string, seq: number, r: Partial<ReportedResult>): JobEvent => ({
  type: 'result',
  jobId,
  seq,
  at: at(),
  result: { status: 'succeeded', output: '', ...r },
});

describeEachDatabase('results by state', (db) => {
  /** An approved request over n targets of one agent, all sent at once. */
  async function dispatched(env: string, n: number) {
    const w = await requestWorld(db().prisma, { env, n, attestation: ATTEST });
    const { req, sent } = await w.dispatched({ reason: 'issue 16 results by state' });
    assert.equal(sent.length, n);
    return { prisma: w.prisma, agent: w.agent, req, sent };
  }

  test('some succeeded, some not: partially_succeeded, with per-state counts in the API shape', async () => {
    const w = await dispatched('partial', 3);
    const [a, b, c] = w.sent as [(typeof w.sent)[0], (typeof w.sent)[0], (typeof w.sent)[0]];
    await executions.applyJobEvent(w.prisma, w.agent.id, result(a.jobId, 1, { output: 'ok\n' }));
    await executions.applyJobEvent(w.prisma, w.agent.id, result(b.jobId, 1, { output: 'ok\n' }));
    const last = await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(c.jobId, 1, { status: 'failed', errorCode: 'USER_EXCEPTION', output: 'boom\n' }),
    );
    assert.ok(
      last.effects.some((e) => e.kind === 'request' && e.state === 'partially_succeeded'),
      'the outcome is pushed to the page',
    );
    // As the route sends it (JSON) and the typed client parses it.
    const wire: unknown = JSON.parse(JSON.stringify(await requests.getRequest(w.prisma, w.req.id)));
    const detail = RequestDetail.parse(wire);
    assert.equal(detail.state, 'partially_succeeded', '2 of 3 succeeded is not `failed`');
    assert.equal(detail.executionCounts.succeeded, 2);
    assert.equal(detail.executionCounts.failed, 1);
    assert.equal(detail.executionCounts.queued, 0, 'every state is present');
    assert.equal(
      Object.values(detail.executionCounts).reduce((x, y) => x + y, 0),
      3,
      'the counts add up to the targets',
    );
    const audit = await w.prisma.auditEvent.findMany({
      where: { action: 'request.partially_succeed', subjectId: w.req.id },
    });
    assert.equal(audit.length, 1);
    assert.deepEqual(audit[0]!.data, { executions: { succeeded: 2, failed: 1 } });
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('none succeeded: failed; a late real result corrects it to partially_succeeded, then succeeded', async () => {
    const w = await dispatched('none-then-late', 2);
    const [a, b] = w.sent as [(typeof w.sent)[0], (typeof w.sent)[0]];
    for (const e of [a, b])
      await executions.applyJobEvent(w.prisma, w.agent.id, {
        type: 'state',
        jobId: e.jobId,
        seq: 1,
        at: at(),
        state: 'picked_up',
      });
    await w.prisma.agent.update({ where: { id: w.agent.id }, data: { status: 'offline' } });
    await executions.markAgentLost(w.prisma, w.agent.id);
    let detail = await requests.getRequest(w.prisma, w.req.id);
    assert.equal(detail.state, 'failed', 'nothing known to have succeeded');
    assert.equal(detail.executionCounts.agent_lost, 2);
    // The agent's outbox delivers the truth, one result at a time.
    await executions.applyJobEvent(w.prisma, w.agent.id, result(a.jobId, 2, { output: 'a\n' }));
    detail = await requests.getRequest(w.prisma, w.req.id);
    assert.equal(detail.state, 'partially_succeeded', 'one real success, one still lost');
    await executions.applyJobEvent(w.prisma, w.agent.id, result(b.jobId, 2, { output: 'b\n' }));
    detail = await requests.getRequest(w.prisma, w.req.id);
    assert.equal(detail.state, 'succeeded');
    assert.equal(detail.executionCounts.succeeded, 2);
    const moves = (
      await w.prisma.auditEvent.findMany({
        where: { action: 'request.correct', subjectId: w.req.id },
        orderBy: { seq: 'asc' },
      })
    ).map((e) => {
      const d = e.data as { from: string; to: string };
      return `${d.from}→${d.to}`;
    });
    assert.deepEqual(moves, ['failed→partially_succeeded', 'partially_succeeded→succeeded']);
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('dropped bytes are counted to the page and the download; pushes carry the report seq', async () => {
    const w = await dispatched('cut', 2);
    const [a, b] = w.sent as [(typeof w.sent)[0], (typeof w.sent)[0]];
    const chunk = await executions.applyJobEvent(w.prisma, w.agent.id, {
      type: 'output',
      jobId: a.jobId,
      seq: 1,
      at: at(),
      chunk: 'first\n',
    });
    const pushed = chunk.effects.filter((e) => e.kind === 'output' || e.kind === 'execution');
    assert.deepEqual(
      pushed.map((e) => [e.kind, 'seq' in e ? e.seq : undefined]),
      [
        ['output', 1],
        ['execution', 1],
      ],
      'the chunk and its state update share the report seq',
    );
    assert.ok(
      chunk.effects.some((e) => e.kind === 'request' && e.progress === true),
      'progress only',
    );
    // What the harness kept, its marker, and how many bytes it counted after the cap.
    const kept = 'é'.repeat(10) + '\n[pyreach: output truncated at 21 bytes]\n';
    await executions.applyJobEvent(
      w.prisma,
      w.agent.id,
      result(a.jobId, 2, { output: kept, outputTruncated: true, outputDroppedBytes: 123_456 }),
    );
    await executions.applyJobEvent(w.prisma, w.agent.id, result(b.jobId, 1, { output: 'ok\n' }));
    const detail = RequestDetail.parse(
      JSON.parse(JSON.stringify(await requests.getRequest(w.prisma, w.req.id))),
    );
    const byId = new Map(detail.executions.map((e) => [e.id, e]));
    assert.equal(byId.get(a.id)!.outputDroppedBytes, 123_456);
    assert.equal(byId.get(a.id)!.seq, 2, 'the page knows which reports it holds');
    assert.equal(byId.get(b.id)!.outputDroppedBytes, null, 'nothing cut');

    const file = await requests.executionOutput(w.prisma, w.req.id, a.id);
    assert.equal(
      Buffer.from(file.bytes).toString('utf8'),
      kept + executions.OUTPUT_TRUNCATED_MARKER,
      'the whole stored output, as printed (our own mark of the cut after the harness one)',
    );
    assert.equal(file.droppedBytes, 123_456);
    assert.match(file.fileName, /^pyreach-[A-Za-z0-9_-]+-[A-Za-z0-9_-]+-pid\d+\.txt$/);

    // The attacker reads another request's execution through this request's path: not found, nothing read.
    const other = await dispatched('cut-other', 1);
    await assert.rejects(
      requests.executionOutput(w.prisma, w.req.id, other.sent[0]!.id),
      (e: unknown) => e instanceof Error && 'code' in e && e.code === 'NOT_FOUND',
    );
    await assert.rejects(
      requests.executionOutput(w.prisma, other.req.id, a.id),
      (e: unknown) => e instanceof Error && 'code' in e && e.code === 'NOT_FOUND',
    );
  });

  /** 200 KiB of lines, the same for every target up to `tail` (so far past the preview). */
  const bigOutput = (tail: string): string => {
    const line = 'counter 0123456789 abcdefghij ümlaut €uro\n';
    return line.repeat(Math.ceil((200 * KIB) / Buffer.byteLength(line))) + tail;
  };

  test('200 KiB outputs: previews on the wire, digests of the whole, two groups, the download whole', async () => {
    const n = 4;
    const { prisma, agent, req, sent } = await dispatched('previews', n);

    // Three alike to the last byte, one differing only in its last line; the last one streams, then ends.
    const same = bigOutput('end A\n');
    const other = bigOutput('end B\n');
    const outputs = [same, same, other, same];
    const ev = (i: number, seq: number, output: string): JobEvent => ({
      type: 'result',
      jobId: sent[i]!.jobId,
      seq,
      at: new Date().toISOString(),
      result: { status: 'succeeded', output },
    });
    for (let i = 0; i < 3; i++) await executions.applyJobEvent(prisma, agent.id, ev(i, 1, outputs[i]!));
    // Streamed in chunks (each write of the output updates its digest), then the result supersedes them.
    for (let k = 0; k < 3; k++)
      await executions.applyJobEvent(prisma, agent.id, {
        type: 'output',
        jobId: sent[3]!.jobId,
        seq: k + 1,
        at: new Date().toISOString(),
        chunk: same.slice(k * 20 * KIB, (k + 1) * 20 * KIB),
      });
    let streaming = await requests.getRequest(prisma, req.id);
    const s3 = streaming.executions.find((e) => e.id === sent[3]!.id)!;
    assert.equal(s3.outputDigest, sha256(same.slice(0, 60 * KIB)), 'the digest follows the appends');
    assert.equal(s3.outputPreview, true);
    await executions.applyJobEvent(prisma, agent.id, ev(3, 4, same));

    const json = JSON.stringify(await requests.getRequest(prisma, req.id));
    const detail = RequestDetail.parse(JSON.parse(json));
    assert.ok(
      Buffer.byteLength(json) < n * (OUTPUT_PREVIEW_BYTES + 2 * KIB),
      `the detail is ${Buffer.byteLength(json)} bytes for ${n} × 200 KiB of output`,
    );
    const byId = new Map(detail.executions.map((e) => [e.id, e]));
    for (const [i, s] of sent.entries()) {
      const e = byId.get(s.id)!;
      const whole = outputs[i]!;
      assert.ok(Buffer.byteLength(e.output) <= OUTPUT_PREVIEW_BYTES, 'at most the preview');
      assert.ok(Buffer.byteLength(e.output) > OUTPUT_PREVIEW_BYTES - 4, 'cut on a character, no shorter');
      assert.ok(whole.startsWith(e.output), 'the preview is the start of the stored output');
      assert.equal(e.outputPreview, true);
      assert.equal(e.outputDroppedBytes, null, 'a preview is not a cut');
      assert.equal(e.outputDigest, sha256(whole), 'sha256 of the whole stored output');
      assert.deepEqual(e.process?.cmdline, ['/usr/bin/python3.14', 'app.py', `--worker=${100 + i}`]);
    }
    const groups = groupIdenticalOutcomes(detail.executions, (st) => EXECUTION[st].terminal);
    assert.deepEqual(
      groups.map((g) => g.members.map((m) => m.id)),
      [[sent[0]!.id, sent[1]!.id, sent[3]!.id], [sent[2]!.id]],
      'alike in the preview, told apart by the digest',
    );

    for (const [i, s] of sent.entries()) {
      const file = await requests.executionOutput(prisma, req.id, s.id);
      assert.equal(encodeBytes(file.bytes), outputs[i], 'the download has every byte');
    }

    // A short output is whole, not a preview; an empty one has the digest of ''.
    await prisma.execution.update({ where: { id: sent[2]!.id }, data: { output: 'short\n' } });
    streaming = await requests.getRequest(prisma, req.id);
    const short = streaming.executions.find((e) => e.id === sent[2]!.id)!;
    assert.deepEqual(
      [short.output, short.outputPreview, short.outputDigest],
      ['short\n', false, sha256('short\n')],
    );
    // Nobody stores a digest that does not match (the trigger recomputes it).
    await prisma.execution.update({ where: { id: sent[2]!.id }, data: { outputDigest: '0'.repeat(64) } });
    const row = await prisma.execution.findUniqueOrThrow({ where: { id: sent[2]!.id } });
    assert.equal(row.outputDigest, sha256('short\n'));
  });
});
