import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codeHash } from '@pyreach/protocol/job';
import { getScript } from '@pyreach/scripts';
import { AppError } from './errors';
import { newId } from './ids';
import { saveSnapshot } from './inventory';
import { previewPreflight } from './preflight';
import * as requests from './requests';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedUser,
  snapshot,
  testKeyPair,
} from '../../../../../test/support/services';

const ATTEST = testKeyPair();

const SCRIPT = 'interpreter.info';
const libraryOnly = {
  allowedUsers: ['*'],
  allowRoot: false,
  allowCustomCode: false,
  maxCodeBytes: 262144,
  allowWake: false,
  library: [{ id: SCRIPT, codeHash: codeHash(getScript(SCRIPT)!.source) }],
};
const doomedError = (e: unknown) =>
  e instanceof AppError && e.code === 'ALL_TARGETS_DOOMED' && e.status === 422;

describeEachDatabase('pre-flight verdicts', (db) => {
  let worlds = 0;
  async function world() {
    const { prisma } = db();
    const env = `pf${++worlds}`; // each world its own hosts (the database is shared by the tests)
    const admin = await seedUser(prisma, 'admin');
    const op = await seedUser(prisma, 'operator');
    // Host A: one healthy process, one that disabled remote debugging, one (pid 103) blocked in C.
    const a = await seedAgent(prisma, admin, {
      labels: { env },
      processes: [
        pyProcess(101),
        pyProcess(102, { remoteDebugEnabled: false }),
        pyProcess(103, { threads: [{ tid: 103, main: true }] }),
      ],
    });
    // Host B: its agent runs only its own library (it says so with its host facts).
    const b = await seedAgent(prisma, admin, { labels: { env } });
    const snapB = snapshot('lib-only', [pyProcess(201)], { env });
    await saveSnapshot(prisma, b.id, { ...snapB, host: { ...snapB.host, localPolicy: libraryOnly } });
    const t = (agentId: string, pid: number) => ({ agentId, pid, startTime: String(1000 + pid) });
    return { prisma, admin, op, a, b, t, env };
  }

  test('verdicts: exited, remote debugging off, agent policy, blocked threads; GET re-evaluates now', async () => {
    const { prisma, op, a, b, t } = await world();
    await prisma.processInspection.create({
      data: {
        id: newId('insp'),
        agentId: a.id,
        pid: 103,
        startTime: '1103',
        what: 'stacks',
        requestedBy: op.id,
        state: 'succeeded',
        notAfter: new Date(Date.now() + 60_000),
        finishedAt: new Date(),
        result: {
          threads: [
            {
              tid: 103,
              hostTid: 103,
              name: 'python3.14',
              main: true,
              interpreterId: 0,
              holdsGil: false,
              state: {
                status: 'blocked',
                procState: 'S',
                syscall: { number: 232, name: 'epoll_wait' },
                wchan: null,
                uninterruptible: false,
                stable: true,
              },
              frames: [],
              truncated: false,
              error: null,
            },
          ],
        },
      },
    });
    const targets = {
      type: 'processes' as const,
      processes: [t(a.id, 101), t(a.id, 102), t(a.id, 103), t(a.id, 999), t(b.id, 201)],
    };
    const { result: req } = await requests.createRequest(
      prisma,
      op,
      {
        kind: 'custom',
        code: 'print(1)',
        targets,
        reason: 'partly doomed is filed',
      },
      new Date(),
      ATTEST,
    );
    const pf = await requests.requestPreflight(prisma, req.id);
    const by = (pid: number) => pf.targets.find((x) => x.pid === pid)!;
    const codes = (pid: number) => by(pid).reasons.map((r) => r.code);
    // Seeded agents are not connected: every target carries AGENT_OFFLINE; agent A predates localPolicy.
    assert.deepEqual([by(101).verdict, ...codes(101)], ['warn', 'AGENT_OFFLINE', 'AGENT_POLICY_UNKNOWN']);
    assert.equal(by(101).user, 'app');
    assert.deepEqual(by(101).cmdline, ['/usr/bin/python3.14', 'app.py', '--worker=101']);
    assert.equal(by(102).verdict, 'doomed');
    assert.ok(codes(102).includes('REMOTE_DEBUG_DISABLED'));
    assert.ok(codes(103).includes('THREADS_BLOCKED'));
    assert.match(by(103).reasons.find((r) => r.code === 'THREADS_BLOCKED')!.message, /epoll_wait.*--wake/);
    assert.deepEqual([by(999).verdict, ...codes(999)], ['doomed', 'PROCESS_EXITED']);
    assert.equal(by(999).cmdline, null);
    assert.equal(by(201).verdict, 'doomed');
    assert.ok(codes(201).includes('AGENT_POLICY_CUSTOM_CODE'));
    assert.deepEqual(pf.counts, { ok: 0, warn: 2, doomed: 3 });
    assert.equal(pf.allDoomed, false);

    // Re-evaluated now: pid 101 exits (a fresh snapshot without it) → doomed on the next look.
    await saveSnapshot(prisma, a.id, snapshot('a', [pyProcess(102, { remoteDebugEnabled: false })], {}));
    const again = await requests.requestPreflight(prisma, req.id);
    assert.equal(again.targets.find((x) => x.pid === 101)!.verdict, 'doomed');
  });

  test('filing refuses ALL_TARGETS_DOOMED naming each target; library on a library-only host is filed', async () => {
    const { prisma, op, a, b, t } = await world();
    const doomed = {
      type: 'processes' as const,
      processes: [t(a.id, 102), t(a.id, 998), t(b.id, 201)],
    };
    await assert.rejects(
      requests.createRequest(
        prisma,
        op,
        {
          kind: 'custom',
          code: 'print(1)',
          targets: doomed,
          reason: 'doomed',
        },
        new Date(),
        ATTEST,
      ),
      (e: unknown) => {
        assert.ok(doomedError(e));
        const d = (e as AppError).details as { targets: { pid: number; reasons: { code: string }[] }[] };
        assert.deepEqual(
          d.targets.map((x) => [x.pid, x.reasons.map((r) => r.code)]),
          [
            [102, ['REMOTE_DEBUG_DISABLED']],
            [998, ['PROCESS_EXITED']],
            [201, ['AGENT_POLICY_CUSTOM_CODE']],
          ],
        );
        return true;
      },
    );
    assert.equal(await prisma.injectionRequest.count({ where: { reason: 'doomed' } }), 0);
    // The same library script the agent has, byte for byte: fine on host B.
    const lib = await requests.createRequest(
      prisma,
      op,
      {
        kind: 'library',
        scriptId: SCRIPT,
        targets: { type: 'processes', processes: [t(b.id, 201)] },
        reason: 'library on library-only',
      },
      new Date(),
      ATTEST,
    );
    assert.equal(lib.result.state, 'pending');
    // Editing a partly doomed request into an all-doomed one is refused too; nothing changes.
    const { result: ok } = await requests.createRequest(
      prisma,
      op,
      {
        kind: 'custom',
        code: 'print(2)',
        targets: { type: 'processes', processes: [t(a.id, 101)] },
        reason: 'to be edited',
      },
      new Date(),
      ATTEST,
    );
    await assert.rejects(
      requests.updateRequest(prisma, op, ok.id, { targets: doomed }, new Date(), ATTEST),
      doomedError,
    );
    assert.equal((await requests.getRequest(prisma, ok.id)).revision, ok.revision);
  });

  test('a selector is judged by what it matches now; the form preview evaluates a draft', async () => {
    const { prisma, op, a, env } = await world();
    const selector = {
      type: 'selector' as const,
      labels: { env },
      process: { cmdlineContains: '--worker=102' },
    };
    await assert.rejects(
      requests.createRequest(
        prisma,
        op,
        { kind: 'custom', code: 'x=1', targets: selector, reason: 'sel' },
        new Date(),
        ATTEST,
      ),
      doomedError,
    );
    // A selector matching nothing now is not refused here (it may match by dispatch time).
    const none = await previewPreflight(prisma, {
      kind: 'custom',
      code: 'x=1',
      targets: { type: 'selector', labels: { env }, process: { cmdlineContains: 'nothing-like-it' } },
    });
    assert.deepEqual([none.targets.length, none.allDoomed], [0, false]);
    const draft = await previewPreflight(prisma, {
      kind: 'library',
      scriptId: SCRIPT,
      targets: { type: 'selector', labels: { env }, process: {} },
    });
    assert.equal(draft.targets.length, 4); // 3 on A, 1 on B
    assert.equal(draft.targets.find((x) => x.pid === 201)!.verdict, 'warn'); // only offline: library is allowed
    assert.equal(draft.targets.find((x) => x.agentId === a.id && x.pid === 102)!.verdict, 'doomed');
    await assert.rejects(
      previewPreflight(prisma, { kind: 'library', scriptId: 'no.such', targets: selector }),
      (e: unknown) => e instanceof AppError && e.code === 'VALIDATION' && /scriptId/.test(e.userMessage),
    );
  });
});
