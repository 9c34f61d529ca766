/**
 * Changes that undo themselves, on the control plane's side (PGlite and PostgreSQL): the check at a change's
 * expiry is scheduled with its success, claimed exactly once whatever the replicas, signed only from the approved
 * request's content (a database writer cannot turn it into other code), its outcome audited per target; "Restore
 * now" needs no new vote but the right person. The target's own restore is proven in real CPython
 * (test/integration/scripts-safety.int.test.ts; through the real agent and control plane, both stopped meanwhile:
 * test/integration/agent-server.int.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JobEvent } from '@pyreach/protocol/agent';
import { verifyAnyJob } from '@pyreach/protocol/job';
import { checkScriptParams, getScript } from '@pyreach/scripts';
import { verifyAuditChain } from './audit';
import * as dispatch from './dispatch';
import { AppError } from './errors';
import * as executions from './executions';
import * as requests from './requests';
import {
  claimRestoreRuns,
  expireRestoreRuns,
  recordRestoreEvent,
  restoreNow,
  restoreView,
  RESTORE_CHECK_GRACE_MS,
  RESTORE_RUN_TTL_MS,
} from './restore';
import {
  describeEachDatabase,
  pyProcess,
  seedAgent,
  seedPolicy,
  seedUser,
  testKeys,
} from '../../../../../test/support/services';

const SOURCE = getScript('logging.set_level')!.source;
const code = (c: string) => (e: unknown) => e instanceof AppError && e.code === c;
const v2 = () => 2 as const;
const at = (t: Date, ms: number) => new Date(t.getTime() + ms);

/** The agent's result for a job, parsed with the wire schema as the gateway does. */
const report = (jobId: string, seq: number, result: unknown, status = 'succeeded', errorCode?: string) =>
  JobEvent.parse({
    type: 'result',
    jobId,
    seq,
    at: new Date().toISOString(),
    result: {
      status,
      output: '',
      ...(result === undefined ? {} : { result }),
      ...(errorCode ? { errorCode } : {}),
    },
  });

describeEachDatabase('changes that undo themselves: check at expiry and restore now', (db) => {
  const keys = testKeys();
  let n = 0;

  /** An approved logging.set_level of 60 s, sent to one target and reported succeeded at `done`. */
  async function changed(extra: Record<string, unknown> = {}) {
    const { prisma } = db();
    const env = `restore-${++n}`;
    const admin = await seedUser(prisma, 'admin');
    const agent = await seedAgent(prisma, admin, { labels: { env }, processes: [pyProcess(300)] });
    await seedPolicy(
      prisma,
      {
        name: `p-${agent.id}`,
        matchLabels: { env },
        priority: 10,
        requiredApprovals: 1,
      },
      keys.attestation,
    );
    const op = await seedUser(prisma, 'operator');
    const ap = await seedUser(prisma, 'approver');
    const targets = {
      type: 'processes' as const,
      processes: [{ agentId: agent.id, pid: 300, startTime: '1300' }],
    };
    const req = (
      await requests.createRequest(
        prisma,
        op,
        {
          kind: 'library',
          scriptId: 'logging.set_level',
          code: SOURCE,
          params: { logger: 'app', level: 'DEBUG', durationSeconds: 60, ...extra },
          targets,
          reason: 'see why orders fail',
        },
        new Date(),
        keys.attestation,
      )
    ).result;
    await requests.reviewRequest(
      prisma,
      ap,
      req.id,
      { decision: 'approve' },
      { authenticatedAt: new Date(), attestation: keys.attestation },
    );
    const [ex] = (await dispatch.planExecutions(prisma, req.id)).result;
    const [job] = (await dispatch.sendWave(prisma, req.id, keys, () => true, new Date(), v2)).result;
    assert.ok(job, 'the change was sent');
    const done = new Date();
    await executions.applyJobEvent(prisma, agent.id, report(ex!.jobId, 1, { previous: 'ERROR' }), {
      now: done,
    });
    return { prisma, admin, agent, op, ap, req, ex: ex!, done };
  }

  test('the check is scheduled with the success, claimed once, signed from the approved content and audited', async () => {
    const w = await changed({ restoreToken: 'req_copied_from_another' });
    assert.equal(
      w.req.params.restoreToken,
      w.req.id,
      'the change is named by its own request (in the hash), never by a token the filer sent',
    );
    const [run, ...more] = await w.prisma.restoreRun.findMany({ where: { requestId: w.req.id } });
    assert.equal(more.length, 0);
    assert.equal(run!.mode, 'check');
    assert.equal(run!.state, 'scheduled');
    assert.equal(run!.dueAt.getTime(), w.done.getTime() + 60_000 + RESTORE_CHECK_GRACE_MS);
    assert.equal(
      await w.prisma.auditEvent.count({
        where: { action: 'request.restore_scheduled', subjectId: w.req.id },
      }),
      1,
    );
    // A redelivered result schedules nothing more.
    await executions.applyJobEvent(w.prisma, w.agent.id, report(w.ex.jobId, 1, {}), { now: w.done });
    assert.equal(await w.prisma.restoreRun.count({ where: { requestId: w.req.id } }), 1);

    const view = await restoreView(w.prisma, w.req.id, w.done);
    assert.equal(view.autoRestore, true);
    assert.equal(view.durationSeconds, 60);
    assert.equal(view.targets[0]!.restoreAt, at(w.done, 60_000).toISOString());
    assert.equal(view.restoreNowOpen, true);

    // Not before it is due; then two replicas race for it and one wins.
    assert.deepEqual(
      (await claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, at(w.done, 30_000))).result,
      [],
    );
    const due = run!.dueAt;
    const [a, b] = await Promise.all([
      claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, due),
      claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, due),
    ]);
    const claimed = [...a.result, ...b.result];
    assert.equal(claimed.length, 1, 'claimed exactly once');
    assert.deepEqual((await claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, at(due, 1000))).result, []);
    const check = verifyAnyJob(claimed[0]!.envelope, keys.signing.publicKey);
    assert.ok(check.ok && check.payload.action === 'exec', JSON.stringify(check));
    const p = check.payload;
    assert.equal(p.jobId, run!.id);
    assert.match(p.jobId, /^rjob_/);
    assert.equal(p.requestId, w.req.id);
    assert.equal(p.contentHash, w.req.contentHash);
    assert.equal(p.code, SOURCE, 'the approved source itself');
    assert.deepEqual(
      p.params,
      { ...(w.req.params as object), mode: 'check' },
      'the approved parameters plus the mode',
    );
    const vote = await w.prisma.review.findFirstOrThrow({ where: { requestId: w.req.id } });
    assert.deepEqual(p.approvals, [vote.id], 'bound to the approval the change went out on');
    assert.ok(checkScriptParams('logging.set_level', p.params).ok, "a library-only agent's check passes");
    assert.equal(await w.prisma.review.count({ where: { requestId: w.req.id } }), 1, 'no new vote');

    // What the target said, from the addressed agent only, once.
    const said = {
      mode: 'check',
      token: w.req.id,
      logger: 'app',
      state: 'restored',
      reason: 'expired',
      outcome: [
        { kind: 'logger', name: 'app', restored: 'NOTSET', from: 'DEBUG' },
        {
          kind: 'handler',
          name: '<StreamHandler (WARNING)>',
          leftAt: 'INFO',
          expected: 'DEBUG',
          reason: 'changed',
        },
      ],
      current: 'NOTSET',
    };
    const other = await seedAgent(w.prisma, w.admin);
    assert.equal((await recordRestoreEvent(w.prisma, other.id, report(run!.id, 3, said))).result, false);
    assert.equal((await recordRestoreEvent(w.prisma, w.agent.id, report(run!.id, 3, said))).result, true);
    assert.equal((await recordRestoreEvent(w.prisma, w.agent.id, report(run!.id, 3, said))).result, false);
    const ended = await w.prisma.restoreRun.findUniqueOrThrow({ where: { id: run!.id } });
    assert.equal(ended.state, 'succeeded');
    assert.equal(ended.outcome, 'changed', 'a level someone changed meanwhile is reported');
    const [audit] = await w.prisma.auditEvent.findMany({
      where: { action: 'request.restore_checked', subjectId: w.req.id },
    });
    const data = audit!.data as { outcome: string; levels: { name: string; leftAt?: string }[] };
    assert.equal(data.outcome, 'changed');
    assert.equal(data.levels.find((l) => l.leftAt)?.leftAt, 'INFO');
    assert.equal((await restoreView(w.prisma, w.req.id, at(due, 1))).restoreNowOpen, false);
    assert.equal((await verifyAuditChain(w.prisma)).ok, true);
  });

  test('a database writer cannot turn a follow-up into other code, parameters or targets', async () => {
    const w = await changed();
    const run = await w.prisma.restoreRun.findFirstOrThrow({ where: { requestId: w.req.id } });
    // The attacker rewrites the approved row's code to something of their own.
    await w.prisma.$executeRawUnsafe(
      `UPDATE "injection_request" SET code = $1 WHERE id = $2`,
      'import os\nos.system("id")\n',
      w.req.id,
    );
    const r = await claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, run.dueAt);
    assert.deepEqual(r.result, [], 'nothing signed');
    const refused = await w.prisma.restoreRun.findUniqueOrThrow({ where: { id: run.id } });
    assert.equal(refused.state, 'refused');
    assert.equal(refused.errorCode, 'CONTENT_MISMATCH');
    assert.equal(
      await w.prisma.auditEvent.count({ where: { action: 'request.restore_refused', subjectId: w.req.id } }),
      1,
    );

    // Or forges a follow-up row for a request whose change does not undo itself, aimed at another process.
    const x = await changed({ durationSeconds: 0 });
    assert.equal(
      await x.prisma.restoreRun.count({ where: { requestId: x.req.id } }),
      0,
      'kept: nothing to check',
    );
    await x.prisma.restoreRun.create({
      data: {
        id: 'rjob_forged',
        requestId: x.req.id,
        executionId: x.ex.id,
        agentId: x.agent.id,
        pid: 300,
        startTime: '1300',
        mode: 'now',
        dueAt: new Date(0),
        requestedBy: 'system',
      },
    });
    assert.deepEqual((await claimRestoreRuns(x.prisma, keys, [x.agent.id], v2)).result, []);
    assert.equal(
      (await x.prisma.restoreRun.findUniqueOrThrow({ where: { id: 'rjob_forged' } })).errorCode,
      'NOT_RESTORABLE',
    );

    // Or flips a row to another pid of the same agent.
    const y = await changed();
    const yrun = await y.prisma.restoreRun.findFirstOrThrow({ where: { requestId: y.req.id } });
    await y.prisma.restoreRun.update({ where: { id: yrun.id }, data: { pid: 301 } });
    assert.deepEqual((await claimRestoreRuns(y.prisma, keys, [y.agent.id], v2, yrun.dueAt)).result, []);
    assert.equal((await y.prisma.restoreRun.findUniqueOrThrow({ where: { id: yrun.id } })).state, 'refused');
  });

  test('"Restore now" needs no new vote, only the requester or an approver or admin', async () => {
    const w = await changed();
    const now = at(w.done, 10_000);
    const viewer = await seedUser(w.prisma, 'viewer');
    const otherOp = await seedUser(w.prisma, 'operator');
    await assert.rejects(restoreNow(w.prisma, viewer, w.req.id, now), code('FORBIDDEN'));
    await assert.rejects(restoreNow(w.prisma, otherOp, w.req.id, now), code('FORBIDDEN'));
    assert.equal(await w.prisma.restoreRun.count({ where: { requestId: w.req.id, mode: 'now' } }), 0);

    const asked = await restoreNow(w.prisma, w.op, w.req.id, now);
    assert.equal(asked.result.restoreNowOpen, false);
    assert.ok(asked.effects.some((e) => e.kind === 'wake'));
    await assert.rejects(restoreNow(w.prisma, w.ap, w.req.id, now), code('INVALID_STATE'), 'asked once');
    const [audit] = await w.prisma.auditEvent.findMany({
      where: { action: 'request.restore_now', subjectId: w.req.id },
    });
    assert.equal(audit!.actorId, w.op.id);
    assert.equal(await w.prisma.review.count({ where: { requestId: w.req.id } }), 1, 'no new vote');

    const [job] = (await claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, now)).result;
    assert.ok(job, 'due at once (the check stays scheduled for its time)');
    const check = verifyAnyJob(job.envelope, keys.signing.publicKey);
    assert.ok(check.ok && check.payload.action === 'exec');
    assert.equal(check.payload.code, SOURCE);
    assert.equal(check.payload.params.mode, 'restore');
    await recordRestoreEvent(
      w.prisma,
      w.agent.id,
      report(job.jobId, 2, {
        mode: 'restore',
        state: 'restored',
        reason: 'restore-now',
        outcome: [{ kind: 'logger', name: 'app', restored: 'ERROR', from: 'DEBUG' }],
        current: 'ERROR',
      }),
    );
    const done = await w.prisma.auditEvent.findFirstOrThrow({
      where: { action: 'request.restore_done', subjectId: w.req.id },
    });
    assert.equal((done.data as { outcome: string }).outcome, 'restored');

    // An approver (not the requester) may restore another request's change.
    const z = await changed();
    assert.equal((await restoreNow(z.prisma, z.ap, z.req.id, at(z.done, 1000))).result.runs.length, 2);
  });

  test('a target gone is recorded as such; a run whose agent never came back expires, audited', async () => {
    const w = await changed();
    const run = await w.prisma.restoreRun.findFirstOrThrow({ where: { requestId: w.req.id } });
    const [job] = (await claimRestoreRuns(w.prisma, keys, [w.agent.id], v2, run.dueAt)).result;
    await recordRestoreEvent(
      w.prisma,
      w.agent.id,
      report(job!.jobId, 1, undefined, 'target_gone', 'TARGET_GONE'),
    );
    const gone = await w.prisma.restoreRun.findUniqueOrThrow({ where: { id: run.id } });
    assert.equal(gone.outcome, 'target_gone');

    const x = await changed();
    const xrun = await x.prisma.restoreRun.findFirstOrThrow({ where: { requestId: x.req.id } });
    assert.equal(
      (await expireRestoreRuns(x.prisma, at(xrun.dueAt, 1000))).result,
      0,
      'still waiting for the agent',
    );
    await expireRestoreRuns(x.prisma, at(xrun.dueAt, RESTORE_RUN_TTL_MS + 1000));
    const expired = await x.prisma.restoreRun.findUniqueOrThrow({ where: { id: xrun.id } });
    assert.equal(expired.state, 'expired');
    assert.equal(expired.errorCode, 'NOT_DELIVERED');
    assert.equal(
      await x.prisma.auditEvent.count({ where: { action: 'request.restore_checked', subjectId: x.req.id } }),
      1,
    );
  });
});
