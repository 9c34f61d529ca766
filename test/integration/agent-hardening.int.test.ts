/**
 * Issue 10, the agent's part, through the real agent process (CLI) and real CPython 3.14 targets, with a
 * control plane speaking the real /agents protocol (test/support/agent-harness.ts) that the test can make
 * refuse reports as a database would:
 *  - a poison-proof outbox: text that is not safe text is encoded, a report refused for good is dropped after
 *    one refusal (REPORT_REFUSED takes its place, the reason is recorded), the reports behind it arrive, a
 *    restart does not resurrect it, a deferred job holds back only itself;
 *  - one job per target process: six jobs into one busy target all succeed, in order, each with its output;
 *  - cancel means stop: a running job stops within a second; a queued one ends cancelled without running.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JobEvent } from '@pyreach/protocol/agent';
import type { JobPayload } from '@pyreach/protocol/job';
import { AgentProcess, FakeControlPlane } from '../support/agent-harness';
import { startPython, type PyTarget } from '../support/python';

const tmp = (name: string) => `/tmp/pyreach-agent-hard-${process.pid}-${name}`;
const sizeOf = (p: string) => (existsSync(p) ? statSync(p).size : 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('agent hardening: outbox, per-target queue, cancel', { timeout: 300_000 }, () => {
  const cp = new FakeControlPlane();
  let agent: AgentProcess;
  let host: PyTarget;
  let busy: PyTarget;
  let agentId: string;
  const files: string[] = [];

  const target = async (t: PyTarget) => {
    const p = await cp.until(() => cp.processes.get(String(t.pid)), 30_000, `pid ${t.pid} in the inventory`);
    return { pid: p.pid, startTime: p.startTime };
  };
  const run = async (t: PyTarget, code: string, over = {}) => {
    const p = cp.job(agentId, await target(t), code, over);
    assert.deepEqual(await cp.dispatch(cp.sign(p)), { ok: true, accepted: true });
    return p;
  };
  const result = (jobId: string, ms = 30_000) => cp.until(() => cp.resultOf(jobId), ms, `result of ${jobId}`);
  const received = (jobId: string) => cp.received.filter((e) => e.jobId === jobId);

  before(async () => {
    [host, busy] = await Promise.all([
      startPython('idle.py', { style: 'host' }),
      startPython('busy.py', { style: 'host' }),
    ]);
    await cp.start();
    agent = new AgentProcess({
      config: { server: cp.url, policy: { allowRoot: true }, shutdownGraceSeconds: 1, heartbeatSeconds: 1 },
    });
    const enrolled = await agent.cli(['enroll', '--token', cp.newToken()]);
    assert.equal(enrolled.code, 0, enrolled.stderr);
    agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
    agent.start();
  });

  after(async () => {
    await agent?.kill('SIGKILL');
    await cp.stop();
    await Promise.all([host?.kill(), busy?.kill()]);
    for (const f of files) rmSync(f, { force: true });
  });

  // The harness writes output with backslashreplace, so invalid UTF-8 cannot come through print today; the
  // engine's own tests cover raw bytes. NUL and terminal escapes do come through.
  test('NUL and terminal escapes from the target arrive as safe text and the next job runs and is recorded', async () => {
    const p = await run(host, 'print("a\\x00b\\x1b[2J")\nresult = {"k\\x00": "v\\x00"}\n');
    const res = await result(p.jobId);
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result));
    assert.equal(res.result.output, 'a\u{10FF00}b\u{10FF1B}[2J\n');
    assert.deepEqual(res.result.result, { 'k\u{10FF00}': 'v\u{10FF00}' });
    const chunks = cp
      .eventsOf(p.jobId)
      .map((e) => (e.type === 'output' ? e.chunk : ''))
      .join('');
    assert.equal(chunks, 'a\u{10FF00}b\u{10FF1B}[2J\n');
    const next = await run(host, 'print("next")\n');
    assert.equal((await result(next.jobId)).result.status, 'succeeded');
  });

  test('a report refused as malformed is dropped after one refusal, recorded, replaced by REPORT_REFUSED; the reports behind it arrive; a restart does not resurrect it', async () => {
    cp.refuseEvent = (ev) =>
      ev.type === 'output' && ev.chunk.includes('POISON')
        ? { code: 'VALIDATION', message: 'job:event payload is invalid: chunk: refused by this test' }
        : null;
    try {
      const poisoned = await run(host, 'print("POISON")\nresult = 1\n');
      const behind = await run(host, 'print("after the poison")\nresult = 2\n');
      const other = await run(busy, 'print("another target")\nresult = 3\n');

      const res = await result(poisoned.jobId);
      assert.equal(res.result.status, 'failed');
      assert.equal(res.result.errorCode, 'REPORT_REFUSED');
      const refusedSeq = received(poisoned.jobId).find((e) => e.type === 'output')!.seq;
      assert.equal(
        res.seq,
        refusedSeq,
        'the substitute takes the refused report seq: no gap for the control plane',
      );
      assert.deepEqual(res.result.refusedReport, {
        seq: refusedSeq,
        type: 'output',
        code: 'VALIDATION',
        message: 'job:event payload is invalid: chunk: refused by this test',
      });
      assert.match(res.result.message!, /refused this job's output report .*VALIDATION/);

      for (const [j, out] of [
        [behind, 'after the poison\n'],
        [other, 'another target\n'],
      ] as const) {
        const r = await result(j.jobId);
        assert.equal(r.result.status, 'succeeded', JSON.stringify(r.result));
        assert.equal(r.result.output, out);
      }
      await sleep(1500);
      assert.equal(
        received(poisoned.jobId).filter((e) => e.type === 'output').length,
        1,
        'the poisoned report was sent exactly once',
      );
      assert.ok(
        received(poisoned.jobId).every((e) => e.seq <= refusedSeq),
        'the job reports made after the refused one stay on the host',
      );

      const audit = agent.audit().filter((a) => a.jobId === poisoned.jobId);
      const rejected = audit.find((a) => a.event === 'delivery_rejected');
      assert.equal(rejected?.code, 'VALIDATION');
      assert.equal(rejected?.message, 'job:event payload is invalid: chunk: refused by this test');
      assert.equal(rejected?.outcome, 'replaced_by_report_refused');
      assert.equal(
        audit.find((a) => a.event === 'finished')?.outcome,
        'succeeded',
        'the local audit keeps the job own outcome',
      );
      const acks = readFileSync(join(agent.stateDir, 'jobs', poisoned.jobId, 'acks.jsonl'), 'utf8');
      assert.match(
        acks,
        /"rejected":\{"code":"VALIDATION"/,
        'the journal records the refusal and its reason',
      );

      // Restart: nothing of the poisoned job is sent again, and the outbox is empty.
      const sentBefore = received(poisoned.jobId).length;
      const auths = cp.authCount;
      await agent.kill('SIGTERM');
      agent.start();
      await cp.until(() => cp.authCount > auths, 30_000, 'the restarted agent');
      const hbFrom = cp.heartbeats.length;
      await cp.until(() => cp.heartbeats.length > hbFrom + 1, 15_000, 'heartbeats after the restart');
      assert.equal(received(poisoned.jobId).length, sentBefore, 'a restart does not resurrect it');
      const hb = cp.heartbeats.at(-1) as { outboxDepth: number; outboxOldestAgeSeconds: number | null };
      assert.equal(hb.outboxDepth, 0);
      assert.equal(hb.outboxOldestAgeSeconds, null);
    } finally {
      cp.refuseEvent = null;
    }
  });

  test('a job whose reports the control plane defers (INTERNAL) holds back only itself, and the heartbeat shows the age of the backlog', async () => {
    let deferring = true;
    let deferredJob = '';
    cp.refuseEvent = (ev) =>
      deferring && ev.jobId === deferredJob
        ? { code: 'INTERNAL', message: 'the server could not process this message; it was not applied' }
        : null;
    try {
      const p = cp.job(agentId, await target(host), 'print("deferred")\n');
      deferredJob = p.jobId;
      assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
      const free = await run(busy, 'print("free")\n');
      assert.equal((await result(free.jobId)).result.status, 'succeeded', 'another job is not blocked');
      assert.equal(cp.resultOf(p.jobId), undefined);
      const hb = await cp.until(
        () =>
          (cp.heartbeats as { outboxDepth: number; outboxOldestAgeSeconds: number | null }[]).find(
            (h) => h.outboxDepth > 0 && (h.outboxOldestAgeSeconds ?? 0) >= 1,
          ),
        15_000,
        'a heartbeat with a backlog',
      );
      assert.ok(hb.outboxOldestAgeSeconds! >= 1);
      deferring = false;
      const r = await result(p.jobId, 60_000);
      assert.equal(r.result.status, 'succeeded');
      assert.ok(received(p.jobId).length > cp.eventsOf(p.jobId).length, 'it was retried, not dropped');
    } finally {
      cp.refuseEvent = null;
    }
  });

  test('six jobs into one busy target run one at a time, in order, each succeeding with its own output', async () => {
    const order = tmp('order.txt');
    files.push(order);
    rmSync(order, { force: true });
    const jobs: JobPayload[] = [];
    for (let i = 0; i < 6; i++)
      jobs.push(
        await run(
          busy,
          `import time\nwith open(${JSON.stringify(order)}, "a") as f:\n    f.write("${i}\\n")\ntime.sleep(1)\nprint("job ${i}")\nresult = ${i}\n`,
        ),
      );
    for (const [i, j] of jobs.entries()) {
      const r = await result(j.jobId, 60_000);
      assert.equal(r.result.status, 'succeeded', `job ${i}: ${JSON.stringify(r.result)}`);
      assert.notEqual(r.result.errorCode, 'HARNESS_ERROR');
      assert.equal(r.result.output, `job ${i}\n`);
      assert.equal(r.result.result, i);
    }
    assert.deepEqual(readFileSync(order, 'utf8').split('\n').filter(Boolean), ['0', '1', '2', '3', '4', '5']);
    const queued = jobs
      .slice(1)
      .map((j) =>
        cp.eventsOf(j.jobId).find((e): e is Extract<JobEvent, { type: 'queued' }> => e.type === 'queued'),
      );
    assert.ok(
      queued.every(
        (q) =>
          q &&
          jobs
            .slice(
              0,
              jobs.findIndex((j) => j.jobId === q.jobId),
            )
            .some((j) => j.jobId === q.behindJobId),
      ),
      'each later job said it was queued behind an earlier one',
    );
  });

  test('a cancel for a job queued behind another ends it cancelled without running', async () => {
    const ran = tmp('queued-ran.txt');
    files.push(ran);
    const long = await run(host, 'import time\ntime.sleep(2)\n');
    const waiting = await run(host, `open(${JSON.stringify(ran)}, "w").write("ran")\n`);
    await cp.until(() => cp.eventsOf(waiting.jobId).find((e) => e.type === 'queued'), 10_000, 'queued');
    cp.cancel(waiting.jobId);
    const r = await result(waiting.jobId);
    assert.equal(r.result.status, 'cancelled');
    assert.equal(r.result.errorCode, 'CANCELLED');
    assert.equal((await result(long.jobId)).result.status, 'succeeded');
    assert.equal(existsSync(ran), false, 'its code never ran');
  });

  let cancelled: { jobId: string; heartbeat: string } | null = null;

  test('a cancel stops a running job within a second, and it is never reported succeeded', async () => {
    const hb = tmp('cancel-heartbeat.txt');
    files.push(hb);
    rmSync(hb, { force: true });
    const p = await run(
      host,
      `import time\nprint("started")\nwhile True:\n    with open(${JSON.stringify(hb)}, "a") as f:\n        f.write("x")\n    time.sleep(0.05)\n`,
      { options: { inline: false, budgetSeconds: 60, pickupTimeoutSeconds: 10, backend: 'native' } },
    );
    await cp.until(() => sizeOf(hb) > 10, 15_000, 'the job running');
    const t0 = Date.now();
    cp.cancel(p.jobId);
    const r = await result(p.jobId);
    assert.ok(Date.now() - t0 < 5000, 'the engine reported soon after the cancel');
    assert.equal(r.result.status, 'cancelled', JSON.stringify(r.result));
    assert.equal(r.result.errorCode, 'CANCELLED');
    assert.match(r.result.output, /^started\n/, 'the output so far is kept');
    assert.equal(r.result.leftoverThread ?? null, null, 'the code stopped: no thread is left over');
    const size = sizeOf(hb);
    await sleep(1000);
    assert.equal(sizeOf(hb), size, 'the heartbeat file stopped growing: the code stopped');
    assert.ok(agent.audit().some((a) => a.event === 'cancel_requested' && a.jobId === p.jobId));
    cancelled = { jobId: p.jobId, heartbeat: hb };
  });

  test('a cancelled running job is reported cancelled end to end: journal, local audit, control plane', () => {
    assert.ok(cancelled, 'the previous test ran the job');
    const r = cp.resultOf(cancelled.jobId)!;
    assert.equal(r.result.status, 'cancelled');
    assert.notEqual(r.result.errorCode, 'TIME_BUDGET_EXCEEDED');
    const fin = agent.audit().find((a) => a.event === 'finished' && a.jobId === cancelled!.jobId);
    assert.equal(fin?.outcome, 'cancelled');
    const journal = readFileSync(join(agent.stateDir, 'jobs', cancelled.jobId, 'events.jsonl'), 'utf8');
    assert.match(journal, /"type":"result".*"status":"cancelled"/);
  });

  test('a cancel of code blocked in C ends cancelled, says it may still run and names the leftover thread', async () => {
    const t = await startPython('idle.py', { style: 'host' });
    try {
      const p = await run(t, 'import time\nprint("blocking")\ntime.sleep(20)\n', {
        options: { inline: false, budgetSeconds: 60, pickupTimeoutSeconds: 10, backend: 'native' },
      });
      await cp.until(
        () => cp.eventsOf(p.jobId).find((e) => e.type === 'state' && e.state === 'picked_up'),
        15_000,
        'picked up',
      );
      await cp.until(() => cp.eventsOf(p.jobId).find((e) => e.type === 'output'), 10_000, 'its output');
      cp.cancel(p.jobId);
      const r = (await result(p.jobId)).result;
      assert.equal(r.status, 'cancelled', JSON.stringify(r));
      assert.equal(r.errorCode, 'CANCELLED');
      assert.match(
        r.message ?? '',
        /could not be interrupted .*\(blocked in C code\?\); it may still be running in/,
      );
      assert.ok(r.leftoverThread && Number.isInteger(r.leftoverThread.tid), JSON.stringify(r));
      assert.equal(r.output, 'blocking\n');
      const fin = agent.audit().find((a) => a.event === 'finished' && a.jobId === p.jobId);
      assert.equal(fin?.outcome, 'cancelled');
      assert.equal(fin?.message, r.message, 'the local audit says the same as the report');
    } finally {
      await t.kill();
    }
  });

  let stoppedAtShutdown: string | null = null;

  test('SIGTERM ends a queued job INTERRUPTED without running it and stops a job running past the grace; both are delivered before exit', async () => {
    const hb = tmp('sigterm-heartbeat.txt');
    const ran = tmp('sigterm-queued-ran.txt');
    files.push(hb, ran);
    rmSync(hb, { force: true });
    const long = await run(
      host,
      `import time\nwhile True:\n    with open(${JSON.stringify(hb)}, "a") as f:\n        f.write("x")\n    time.sleep(0.05)\n`,
      { options: { inline: false, budgetSeconds: 60, pickupTimeoutSeconds: 10, backend: 'native' } },
    );
    const queued = await run(host, `open(${JSON.stringify(ran)}, "w").write("ran")\n`);
    await cp.until(() => cp.eventsOf(queued.jobId).find((e) => e.type === 'queued'), 10_000, 'queued');
    await cp.until(() => sizeOf(hb) > 10, 15_000, 'the long job running');
    assert.equal(await agent.kill('SIGTERM'), 0, 'a clean exit');
    const refusal = cp.eventsOf(queued.jobId).find((e) => e.type === 'refused');
    assert.equal(refusal?.type === 'refused' && refusal.code, 'INTERRUPTED');
    assert.equal(existsSync(ran), false, 'the queued job never ran');
    const r = cp.resultOf(long.jobId);
    assert.ok(r, 'the stopped job result was delivered before the agent exited');
    assert.notEqual(r.result.status, 'succeeded');
    const size = sizeOf(hb);
    await sleep(1000);
    assert.equal(sizeOf(hb), size, 'the code stopped');
    stoppedAtShutdown = long.jobId;
    const auths = cp.authCount;
    agent.start();
    await cp.until(() => cp.authCount > auths, 30_000, 'the restarted agent');
  });

  test('a job stopped at shutdown is reported cancelled, never TIME_BUDGET_EXCEEDED', () => {
    assert.ok(stoppedAtShutdown, 'the previous test ran the job');
    const r = cp.resultOf(stoppedAtShutdown)!;
    assert.equal(r.result.status, 'cancelled');
    assert.notEqual(r.result.errorCode, 'TIME_BUDGET_EXCEEDED');
  });
});
