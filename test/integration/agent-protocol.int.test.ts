/**
 * The real agent process (CLI, spawned) against a control plane speaking the real /agents protocol that the
 * test controls (test/support/agent-harness.ts), with real CPython 3.14 targets, host-style and
 * container-style. The test-held signing key lets us send what the real server never would: forged, expired,
 * replayed and misaddressed jobs. The same flows against the real server are in agent-server.int.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { signJob } from '@pyreach/protocol/job';
import { getScript } from '@pyreach/scripts';
import { AgentProcess, FakeControlPlane } from '../support/agent-harness';
import { startPython, type PyTarget } from '../support/python';

const sideEffect = (name: string) => `/tmp/pyreach-agent-it-${process.pid}-${name}.txt`;
const appendCode = (file: string, extra = '') =>
  `import os\nwith open(${JSON.stringify(file)}, "a") as f:\n    f.write("ran\\n")\n${extra}`;
const lines = (path: string) =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0;

describe('agent against a protocol-speaking control plane', { timeout: 300_000 }, () => {
  const cp = new FakeControlPlane();
  let agent: AgentProcess;
  let host: PyTarget;
  let container: PyTarget;
  let agentId: string;
  let token: string;
  const files: string[] = [];

  const target = async (t: PyTarget) => {
    const p = await cp.until(() => cp.processes.get(String(t.pid)), 30_000, `pid ${t.pid} in the inventory`);
    return { pid: p.pid, startTime: p.startTime };
  };

  before(async () => {
    [host, container] = await Promise.all([
      startPython('idle.py', { style: 'host' }),
      startPython('idle.py', { style: 'container' }),
    ]);
    await cp.start();
    agent = new AgentProcess({
      config: { server: cp.url, policy: { allowRoot: true }, labels: { env: 'test' } },
    });
    token = cp.newToken();
    const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'zone=it']);
    assert.ok(
      !enrolled.stdout.includes(token) && !enrolled.stderr.includes(token),
      'the token is never printed',
    );
    assert.equal(enrolled.code, 0, enrolled.stderr);
    agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
    agent.start();
  });

  after(async () => {
    await agent?.kill('SIGKILL');
    await cp.stop();
    await Promise.all([host?.kill(), container?.kill()]);
    for (const f of files) rmSync(f, { force: true });
  });

  test('enrolment keeps the private key 0600 in a 0700 state directory and pins the signing key', () => {
    assert.equal(statSync(agent.stateDir).mode & 0o777, 0o700);
    assert.equal(statSync(join(agent.stateDir, 'agent.key')).mode & 0o777, 0o600);
    const id = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8'));
    assert.equal(id.signingKeyId, cp.keyId);
    assert.deepEqual(id.labels, { env: 'test', zone: 'it' });
    const pem = readFileSync(join(agent.stateDir, 'agent.key'), 'utf8').split('\n')[1]!;
    assert.ok(
      !agent.logs().includes(token) && !agent.logs().includes(pem),
      'neither the token nor the private key is logged',
    );
  });

  test('the inventory lists host-style and container-style Python targets', async () => {
    const h = await cp.until(() => cp.processes.get(String(host.pid)), 30_000, 'host target');
    const c = await cp.until(() => cp.processes.get(String(container.pid)), 30_000, 'container target');
    assert.equal(h.inContainer, false);
    assert.equal(c.inContainer, true);
    assert.equal(c.nsPid, 1);
    assert.match(h.pythonVersion ?? '', /^3\.14/);
    assert.equal(cp.snapshots[0]?.host.labels.zone, 'it');
    const hb = await cp.until(
      () => cp.heartbeats[0] as { at: string; outboxDepth: number } | undefined,
      15_000,
      'a heartbeat',
    );
    assert.equal(typeof hb.outboxDepth, 'number');
  });

  test('a Python process started or stopped later is reported as a delta within seconds', async () => {
    const late = await startPython('idle.py', { style: 'host' });
    try {
      const d = await cp.until(
        () => cp.deltas.find((x) => x.upserted.some((p) => p.pid === late.pid)),
        15_000,
        'upsert delta',
      );
      assert.match(d.upserted.find((p) => p.pid === late.pid)!.pythonVersion ?? '', /^3\.14/);
    } finally {
      await late.kill();
    }
    await cp.until(
      () => cp.deltas.find((x) => x.removed.some((r) => r.pid === late.pid)),
      15_000,
      'removal delta',
    );
    assert.equal(cp.processes.has(String(late.pid)), false);
  });

  test('a signed job runs once in a host-style target and its output, states and result arrive', async () => {
    const file = sideEffect('host');
    files.push(file);
    const p = cp.job(
      agentId,
      await target(host),
      appendCode(file, 'for i in range(3):\n    print("line", i)\nresult = {"answer": 42}\n'),
    );
    assert.deepEqual(await cp.dispatch(cp.sign(p)), { ok: true, accepted: true });
    const res = await cp.until(() => cp.resultOf(p.jobId), 30_000, 'result');
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result));
    assert.deepEqual(res.result.result, { answer: 42 });
    const evs = cp.eventsOf(p.jobId);
    assert.deepEqual(
      evs.map((e) => e.seq),
      evs.map((_, i) => i + 1),
    );
    assert.deepEqual(
      evs.filter((e) => e.type === 'state').map((e) => e.type === 'state' && e.state),
      ['staged', 'picked_up'],
    );
    const streamed = evs.map((e) => (e.type === 'output' ? e.chunk : '')).join('');
    assert.equal(streamed, 'line 0\nline 1\nline 2\n');
    assert.equal(lines(file), 1);
    const audit = agent.audit().filter((a) => a.jobId === p.jobId);
    assert.deepEqual(
      audit.map((a) => a.event),
      ['received', 'started', 'finished'],
    );
    assert.equal(audit[2]!.codeHash, p.codeHash);
  });

  test('a signed job runs in a container-style target (own root and pid namespace)', async () => {
    const inTarget = `/tmp/agent-it-${process.pid}.txt`;
    files.push(join(container.rootOnHost, inTarget));
    const p = cp.job(
      agentId,
      await target(container),
      appendCode(inTarget, 'import os\nresult = os.getpid()\n'),
    );
    assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
    const res = await cp.until(() => cp.resultOf(p.jobId), 30_000, 'result');
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result));
    assert.equal(res.result.result, 1, 'pid 1 inside its namespace');
    assert.equal(lines(join(container.rootOnHost, inTarget)), 1);
  });

  test('forged, expired, replayed and misaddressed jobs are refused, audited, and never run', async () => {
    const file = sideEffect('refused');
    files.push(file);
    const t = await target(host);
    const forger = generateKeyPairSync('ed25519');
    const forged = signJob(cp.job(agentId, t, appendCode(file)), forger.privateKey, forger.publicKey);
    const forgedSameKeyId = { ...forged, keyId: cp.keyId };
    const expired = cp.sign(
      cp.job(agentId, t, appendCode(file), { notAfter: new Date(Date.now() - 5 * 60_000).toISOString() }),
    );
    const misaddressed = cp.sign(cp.job('agent_someone_else', t, appendCode(file)));
    const changedTarget = cp.sign(cp.job(agentId, { pid: t.pid, startTime: '1' }, appendCode(file)));

    const expect = async (env: unknown, code: string) => {
      const ack = await cp.dispatch(env);
      assert.equal(ack.ok, false);
      assert.equal(ack.error?.code, code, JSON.stringify(ack));
    };
    await expect(forged, 'UNKNOWN_KEY');
    await expect(forgedSameKeyId, 'BAD_SIGNATURE');
    await expect(expired, 'EXPIRED');
    await expect(misaddressed, 'WRONG_AGENT');
    await expect(changedTarget, 'TARGET_CHANGED');

    // Replay: the first copy runs, the second is refused.
    const good = cp.sign(cp.job(agentId, t, appendCode(sideEffect('replay'))));
    files.push(sideEffect('replay'));
    assert.equal((await cp.dispatch(good)).ok, true);
    await cp.until(() => cp.resultOf(good.payload.jobId), 30_000, 'first run');
    await expect(good, 'REPLAYED');

    // Trusted refusals (signature verified, addressed here) also reach the control plane as durable events.
    for (const env of [expired, changedTarget]) {
      const ev = await cp.until(
        () => cp.eventsOf(env.payload.jobId).find((e) => e.type === 'refused'),
        10_000,
        'refused event',
      );
      assert.ok(ev.type === 'refused' && ev.message.length > 0);
    }
    assert.equal(lines(file), 0, 'none of the refused jobs ran');
    assert.equal(lines(sideEffect('replay')), 1, 'the replayed job ran once');
    const refusedCodes = agent
      .audit()
      .filter((a) => a.event === 'refused')
      .map((a) => a.code);
    for (const c of ['UNKNOWN_KEY', 'BAD_SIGNATURE', 'EXPIRED', 'WRONG_AGENT', 'TARGET_CHANGED', 'REPLAYED'])
      assert.ok(refusedCodes.includes(c), `audited ${c}`);
  });

  test('job:cancel stops a running job inside the target and its honest result arrives', async () => {
    const p = cp.job(
      agentId,
      await target(host),
      'import time\nprint("working")\nfor i in range(300):\n    time.sleep(0.1)\nresult = "should not finish"\n',
    );
    assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
    await cp.until(() => cp.eventsOf(p.jobId).find((e) => e.type === 'output'), 20_000, 'running');
    const t0 = Date.now();
    cp.cancel(p.jobId);
    const res = await cp.until(() => cp.resultOf(p.jobId), 20_000, 'result after cancel');
    assert.ok(Date.now() - t0 < 10_000, 'stopped early');
    assert.equal(res.result.status, 'cancelled'); // cancel means stop (issue 10): the engine reports cancelled
    assert.match(res.result.message ?? '', /cancelled/);
    assert.equal(res.result.result, undefined);
  });

  test('the control plane going away mid-job loses nothing: the result arrives exactly once after it is back', async () => {
    const file = sideEffect('cp-restart');
    files.push(file);
    const p = cp.job(
      agentId,
      await target(host),
      appendCode(file, 'import time\nprint("before")\ntime.sleep(3)\nprint("after")\nresult = "done"\n'),
    );
    assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
    await cp.until(
      () => cp.eventsOf(p.jobId).find((e) => e.type === 'state' && e.state === 'picked_up'),
      20_000,
      'picked up',
    );
    const port = cp.port;
    const auths = cp.authCount;
    await cp.stop();
    await new Promise((r) => setTimeout(r, 4500)); // the job finishes while nobody listens
    await cp.start(port);
    const res = await cp.until(() => cp.resultOf(p.jobId), 30_000, 'result after restart');
    assert.equal(res.result.status, 'succeeded');
    assert.ok(cp.authCount > auths, 'the agent reconnected');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(cp.eventsOf(p.jobId).filter((e) => e.type === 'result').length, 1, 'applied exactly once');
    assert.equal(
      cp
        .eventsOf(p.jobId)
        .map((e) => (e.type === 'output' ? e.chunk : ''))
        .join(''),
      'before\nafter\n',
    );
    assert.ok(cp.snapshots.length >= 2, 'full inventory re-sent after the reconnect');
    assert.equal(lines(file), 1);
  });

  test('the agent SIGKILLed mid-job reports an honest outcome on restart and never runs the code twice', async () => {
    const file = sideEffect('agent-kill');
    files.push(file);
    const p = cp.job(
      agentId,
      await target(host),
      appendCode(file, 'import time\ntime.sleep(3)\nprint("finished")\nresult = 7\n'),
    );
    const env = cp.sign(p);
    assert.equal((await cp.dispatch(env)).ok, true);
    await cp.until(
      () => cp.eventsOf(p.jobId).find((e) => e.type === 'state' && e.state === 'picked_up'),
      20_000,
      'picked up',
    );
    await agent.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 4000)); // the harness finishes inside the target meanwhile
    agent.start();
    const res = await cp.until(() => cp.resultOf(p.jobId), 40_000, 'recovered result');
    // The harness finished and reported inside the target: the agent reads that report, it does not guess.
    assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result));
    assert.equal(res.result.result, 7);
    assert.match(res.result.message ?? '', /agent restarted/);
    assert.equal(lines(file), 1, 'ran exactly once');
    const again = await cp.dispatch(env);
    assert.equal(again.error?.code, 'REPLAYED');
    assert.equal(lines(file), 1);
    assert.ok(agent.audit().some((a) => a.jobId === p.jobId && a.event === 'recovered'));
  });

  test('the agent SIGKILLed after staging but before pickup withdraws the job on restart: it never runs later', async (t) => {
    // A target whose main thread sleeps 10 s at a time: a request written into it waits for the next wake-up.
    const script = join(mkdtempSync(join(tmpdir(), 'pyreach-agent-it-')), 'sleepy.py');
    writeFileSync(script, 'import time\nprint("READY", flush=True)\nwhile True:\n    time.sleep(10)\n');
    const sleepy = await startPython(script, { style: 'host' });
    try {
      const file = sideEffect('withdrawn');
      files.push(file);
      const p = cp.job(agentId, await target(sleepy), appendCode(file), {
        options: { inline: false, budgetSeconds: 30, pickupTimeoutSeconds: 30, backend: 'native' },
      });
      assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
      await cp.until(
        () => cp.eventsOf(p.jobId).find((e) => e.type === 'state' && e.state === 'staged'),
        20_000,
        'staged',
      );
      await agent.kill('SIGKILL');
      agent.start();
      const res = await cp.until(() => cp.resultOf(p.jobId), 40_000, 'recovered result');
      t.diagnostic(`recovered as ${res.result.status}`);
      await new Promise((r) => setTimeout(r, 11_000)); // the target has woken up at least once since
      if (res.result.status === 'pickup_timeout') {
        // The usual case: withdrawn before the target woke up, and it stays that way.
        assert.match(res.result.message ?? '', /can never run/);
        assert.equal(lines(file), 0, 'the withdrawn job never ran');
      } else {
        // The target woke up first: whatever is reported must match what happened.
        assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result));
        assert.equal(lines(file), 1);
      }
    } finally {
      await sleepy.kill();
    }
  });

  test('local policy refusals reach the control plane with their reason', async () => {
    await agent.kill('SIGTERM');
    agent.writeConfig({ server: cp.url, policy: { allowRoot: false, allowCustomCode: false } });
    agent.start();
    const t = await target(host);
    await cp.until(() => cp.isConnected() && cp.authCount > 0, 20_000, 'reconnected');
    const rootJob = cp.sign(cp.job(agentId, t, appendCode(sideEffect('policy'))));
    files.push(sideEffect('policy'));
    const ack = await cp.dispatch(rootJob);
    assert.equal(ack.error?.code, 'POLICY_CUSTOM_CODE');
    const ev = await cp.until(
      () => cp.eventsOf(rootJob.payload.jobId).find((e) => e.type === 'refused'),
      10_000,
      'refused event',
    );
    assert.ok(
      ev.type === 'refused' && ev.code === 'POLICY_CUSTOM_CODE' && /allowCustomCode/.test(ev.message),
    );
    // An unmodified library script passes the code rule but the root target is still refused.
    const gc = getScript('gc.stats')!;
    const lib = cp.sign(cp.job(agentId, t, gc.source, { kind: 'library', scriptId: gc.id }));
    const rootAck = await cp.dispatch(lib);
    assert.equal(rootAck.error?.code, 'POLICY_ROOT_TARGET');
    const rootEv = await cp.until(
      () => cp.eventsOf(lib.payload.jobId).find((e) => e.type === 'refused'),
      10_000,
      'refused event',
    );
    assert.ok(rootEv.type === 'refused' && /allowRoot/.test(rootEv.message));
    assert.equal(lines(sideEffect('policy')), 0);
  });

  test('SIGTERM lets the job in hand finish, delivers its result and exits 0', async () => {
    await agent.kill('SIGTERM');
    agent.writeConfig({ server: cp.url, policy: { allowRoot: true } });
    const before = cp.authCount;
    agent.start();
    await cp.until(() => cp.authCount > before, 20_000, 'reconnected');
    const file = sideEffect('sigterm');
    files.push(file);
    const p = cp.job(
      agentId,
      await target(host),
      appendCode(file, 'import time\ntime.sleep(2)\nresult = "finished"\n'),
    );
    assert.equal((await cp.dispatch(cp.sign(p))).ok, true);
    await cp.until(
      () => cp.eventsOf(p.jobId).find((e) => e.type === 'state' && e.state === 'picked_up'),
      20_000,
      'picked up',
    );
    const code = await agent.kill('SIGTERM');
    assert.equal(code, 0);
    const res = cp.resultOf(p.jobId);
    assert.equal(res?.result.status, 'succeeded', 'delivered before exit');
    const status = await agent.cli(['status', '--json']);
    const st = JSON.parse(status.stdout);
    assert.equal(st.outboxDepth, 0);
    assert.equal(st.connection.state, 'not running');
    assert.equal(st.pinnedSigningKeyId, cp.keyId);
    assert.ok(
      st.lastJobs.some(
        (j: { jobId?: string; event: string }) => j.jobId === p.jobId && j.event === 'finished',
      ),
    );
  });
});
