/**
 * Services say what changed, and the Publisher alone turns it into pushes: real service calls on real databases
 * return the effects asserted here, and those effects, through the real /ui gateway on a real socket.io server,
 * reach a real socket.io client as the events the dashboard parses (plus the dispatcher wake-ups and the
 * revocation of an agent's connection).
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Server } from 'socket.io';
import { io as connect, type Socket } from 'socket.io-client';
import { uiEventSchemas, type UiEventName } from '@pyreach/protocol/ui';
import {
  testKeyPair,
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  seedPolicy,
} from '../../../../test/support/services';
import { AgentRooms } from './gateway/agent-rooms';
import { UiGateway } from './gateway/ui';
import { createLogger } from './logger';
import { Publisher, WakeSignal } from './publisher';
import { revokeAgent } from './services/agents';
import { planExecutions, sendWave } from './services/dispatch';
import type { Effect, WakeReason } from './services/effects';
import { applyJobEvent, recordDispatchRefusal } from './services/executions';
import { cancelRequest, createRequest, reviewRequest } from './services/requests';
import { loadOrCreateSigningKey } from './services/signing';

const ATTEST = testKeyPair();
const kinds = (effects: Effect[]) => effects.map((e) => (e.kind === 'wake' ? `wake:${e.why}` : e.kind));

describeEachDatabase('what services say they changed', (db) => {
  async function world(label: string, requiredApprovals: number) {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { labels: { env: label }, processes: [pyProcess(100)] });
    await seedPolicy(
      prisma,
      {
        name: `p-${label}-${agent.id}`,
        matchLabels: { env: label },
        priority: 10,
        requiredApprovals,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const op = await seedUser(prisma, 'operator');
    const input = {
      // A read-only, non-sensitive library script: the only kind a 0-approval policy runs (no one alone).
      kind: 'library' as const,
      scriptId: 'gc.stats',
      targets: {
        type: 'processes' as const,
        processes: [{ agentId: agent.id, pid: 100, startTime: '1100' }],
      },
      reason: 'effects',
    };
    return { prisma, admin, agent, op, input };
  }

  test('filing a request that needs approval changes the request and wakes nobody; the approval wakes the dispatcher', async () => {
    const w = await world('fx-two', 1);
    const filed = await createRequest(w.prisma, w.op, w.input, new Date(), ATTEST);
    assert.deepEqual(filed.effects, [{ kind: 'request', requestId: filed.result.id, state: 'pending' }]);
    const ap = await seedUser(w.prisma, 'approver');
    const approved = await reviewRequest(
      w.prisma,
      ap,
      filed.result.id,
      { decision: 'approve' },
      {
        authenticatedAt: new Date(),
        attestation: ATTEST,
      },
    );
    assert.deepEqual(approved.effects, [
      { kind: 'request', requestId: filed.result.id, state: 'approved' },
      { kind: 'wake', why: 'approved' },
    ]);
  });

  test('a request approved on filing, planned, sent, reported and finished says so at every step', async () => {
    const w = await world('fx-auto', 0);
    const filed = await createRequest(w.prisma, w.op, w.input, new Date(), ATTEST);
    const id = filed.result.id;
    assert.deepEqual(kinds(filed.effects), ['request', 'wake:approved']);
    assert.deepEqual((await planExecutions(w.prisma, id)).effects, [
      { kind: 'request', requestId: id, state: 'dispatching' },
    ]);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const wave = await sendWave(w.prisma, id, { signing: keys, attestation: ATTEST }, () => true);
    const ex = wave.result[0]!.execution;
    // The send ends the dispatch stage: planned → sent, timed for the metrics' histogram.
    const sentEffect = wave.effects[0] as Extract<Effect, { kind: 'execution' }>;
    const dispatchSeconds = sentEffect.timings?.dispatchSeconds;
    assert.ok(dispatchSeconds !== undefined && dispatchSeconds >= 0 && dispatchSeconds < 60);
    assert.deepEqual(wave.effects, [
      {
        kind: 'execution',
        requestId: id,
        executionId: ex.id,
        state: 'sent',
        errorCode: null,
        timings: { dispatchSeconds },
      },
    ]);
    const at = new Date().toISOString();
    const output = await applyJobEvent(w.prisma, w.agent.id, {
      type: 'output',
      jobId: ex.jobId,
      seq: 1,
      at,
      chunk: 'hi\n',
    });
    assert.deepEqual(output.effects, [
      { kind: 'output', requestId: id, executionId: ex.id, seq: 1, chunk: 'hi\n' },
      // The report's place in the execution's sequence (the page applies pushes by it); only progress for the
      // request (its record is the same).
      { kind: 'execution', requestId: id, executionId: ex.id, state: 'sent', errorCode: null, seq: 1 },
      { kind: 'request', requestId: id, state: 'dispatching', progress: true },
    ]);
    const done = await applyJobEvent(w.prisma, w.agent.id, {
      type: 'result',
      jobId: ex.jobId,
      seq: 2,
      at,
      result: { status: 'succeeded', output: 'hi\n', result: 1 },
    });
    assert.deepEqual(done.effects, [
      { kind: 'execution', requestId: id, executionId: ex.id, state: 'succeeded', errorCode: null, seq: 2 },
      { kind: 'request', requestId: id, state: 'succeeded', progress: false },
      { kind: 'wake', why: 'job-finished' },
    ]);
    const again = await applyJobEvent(w.prisma, w.agent.id, {
      type: 'result',
      jobId: ex.jobId,
      seq: 2,
      at,
      result: { status: 'succeeded', output: 'hi\n', result: 1 },
    });
    assert.deepEqual(again, { result: 'duplicate', effects: [] }, 'a duplicate changes nothing and says so');
  });

  test('an agent refusing a dispatch ends the execution refused and frees its slot; a missing ack says nothing', async () => {
    const w = await world('fx-refuse', 0);
    const { result: req } = await createRequest(
      w.prisma,
      w.op,
      {
        ...w.input,
        rollout: { concurrency: 1, maxFailures: 5 },
      },
      new Date(),
      ATTEST,
    );
    await planExecutions(w.prisma, req.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const [job] = (await sendWave(w.prisma, req.id, { signing: keys, attestation: ATTEST }, () => true))
      .result;
    const silent = await recordDispatchRefusal(w.prisma, w.agent.id, job!.execution.jobId, {
      code: 'ACK_TIMEOUT',
      message: 'no answer',
    });
    assert.deepEqual(silent.effects, []);
    const refused = await recordDispatchRefusal(w.prisma, w.agent.id, job!.execution.jobId, {
      code: 'REPLAYED',
      message: 'seen before',
    });
    assert.deepEqual(kinds(refused.effects), ['execution', 'wake:job-finished']);
    assert.equal(refused.effects[0]?.kind === 'execution' && refused.effects[0].state, 'refused');
  });

  test('cancelling wakes the dispatcher; revoking an agent tells it and the fleet', async () => {
    const w = await world('fx-cancel', 1);
    const { result: req } = await createRequest(w.prisma, w.op, w.input, new Date(), ATTEST);
    assert.deepEqual((await cancelRequest(w.prisma, w.op, req.id)).effects, [
      { kind: 'request', requestId: req.id, state: 'cancelled' },
      { kind: 'wake', why: 'cancelled' },
    ]);
    assert.deepEqual((await revokeAgent(w.prisma, w.admin, w.agent.id, 'decommissioned')).effects, [
      { kind: 'agent-revoked', agentId: w.agent.id, reason: 'decommissioned' },
      { kind: 'fleet', hostId: null },
    ]);
  });
});

describeEachDatabase('the Publisher', (db) => {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'] });
  const log = createLogger({ level: 'silent', pretty: false });
  const ui = new UiGateway(
    io,
    { authenticate: async (c) => (c ? { id: 'u_1', role: 'viewer' } : null), canRead: () => true },
    log,
  );
  const rooms = new AgentRooms(io);
  const wakes: WakeReason[] = [];
  const signal = new WakeSignal();
  signal.listen((why) => wakes.push(why));
  const publisher = new Publisher(ui, rooms, signal);
  let url = '';
  const sockets: Socket[] = [];

  before(async () => {
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const s of sockets) s.close();
    await new Promise<void>((r) => io.close(() => r()));
  });

  const browser = async (requestId: string) => {
    const s = connect(`${url}/ui`, { transports: ['websocket'], extraHeaders: { cookie: 'session=1' } });
    sockets.push(s);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('connect_error', reject);
    });
    const ack = await s.emitWithAck('subscribe', { requestId });
    assert.deepEqual(ack, { ok: true });
    const got: { event: UiEventName; msg: unknown }[] = [];
    for (const event of Object.keys(uiEventSchemas) as UiEventName[])
      s.on(event, (msg: unknown) => {
        assert.equal(uiEventSchemas[event].safeParse(msg).success, true, `${event} matches its schema`);
        got.push({ event, msg });
      });
    return got;
  };
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(ok(), what);
  };

  test("pushes a job report's effects to the browser as the /ui events the dashboard parses, and wakes the dispatcher", async () => {
    const { prisma } = db();
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { labels: { env: 'pub' }, processes: [pyProcess(100)] });
    await seedPolicy(
      prisma,
      {
        name: `pub-${agent.id}`,
        matchLabels: { env: 'pub' },
        priority: 10,
        requiredApprovals: 0,
        allowCustomCode: true,
      },
      ATTEST,
    );
    const op = await seedUser(prisma, 'operator');
    const { result: req } = await createRequest(
      prisma,
      op,
      {
        kind: 'library',
        scriptId: 'gc.stats',
        targets: { type: 'processes', processes: [{ agentId: agent.id, pid: 100, startTime: '1100' }] },
        reason: 'pushes',
      },
      new Date(),
      ATTEST,
    );
    await planExecutions(prisma, req.id);
    const keys = await loadOrCreateSigningKey({
      keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
    });
    const [job] = (await sendWave(prisma, req.id, { signing: keys, attestation: ATTEST }, () => true)).result;
    const ex = job!.execution;
    const got = await browser(req.id);
    const other = await browser('req_someone_else');
    const at = new Date().toISOString();

    publisher.apply(
      (await applyJobEvent(prisma, agent.id, { type: 'output', jobId: ex.jobId, seq: 1, at, chunk: 'one\n' }))
        .effects,
    );
    publisher.apply(
      (
        await applyJobEvent(prisma, agent.id, {
          type: 'result',
          jobId: ex.jobId,
          seq: 2,
          at,
          result: { status: 'failed', errorCode: 'USER_EXCEPTION', message: 'boom', output: 'one\n' },
        })
      ).effects,
    );
    await until('five events reach the subscribed browser', () => got.length === 5);
    assert.deepEqual(got, [
      { event: 'execution:output', msg: { requestId: req.id, executionId: ex.id, seq: 1, chunk: 'one\n' } },
      // Each update carries its report's place in the execution's sequence; the request's own push says when
      // only its executions moved (progress) and leaves the flag out when its record changed (it ended).
      {
        event: 'execution:update',
        msg: { requestId: req.id, executionId: ex.id, state: 'sent', errorCode: null, seq: 1 },
      },
      { event: 'request:changed', msg: { requestId: req.id, state: 'dispatching', progress: true } },
      {
        event: 'execution:update',
        msg: { requestId: req.id, executionId: ex.id, state: 'failed', errorCode: 'USER_EXCEPTION', seq: 2 },
      },
      { event: 'request:changed', msg: { requestId: req.id, state: 'failed' } },
    ]);
    assert.deepEqual(wakes.splice(0), ['job-finished']);
    await until('the fleet room hears the state changes', () => other.length === 4);
    assert.equal(
      other.some((e) => e.event === 'execution:output'),
      false,
      'output goes only to browsers subscribed to that request',
    );
  });

  test('revoking an agent drops its connection wherever it is, after telling it why', async () => {
    io.of('/agents').on('connection', (s) => void s.join(`agent:ag_pub`));
    const agent = connect(`${url}/agents`, { transports: ['websocket'] });
    sockets.push(agent);
    await new Promise<void>((r) => agent.once('connect', () => r()));
    await new Promise((r) => setTimeout(r, 50));
    const told = new Promise<unknown>((r) => agent.once('agent:revoked', r));
    const dropped = new Promise<string>((r) => agent.once('disconnect', r));
    publisher.apply([{ kind: 'agent-revoked', agentId: 'ag_pub', reason: 'stolen host' }]);
    assert.deepEqual(await told, { reason: 'stolen host' });
    assert.equal(await dropped, 'io server disconnect');
  });
});
