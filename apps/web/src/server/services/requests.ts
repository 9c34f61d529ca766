import {
  CreateRequest,
  type ExecutionDetail,
  PolicyPreviewBody,
  Review as ReviewInput,
  UpdateRequest,
  type Targets,
  type TargetsInput,
} from '@pyreach/protocol/api';
import { z } from 'zod';
import { type JsonObject, type Labels } from '@pyreach/protocol/common';
import { decodeToBytes } from '@pyreach/protocol/text';
import { OUTPUT_PREVIEW_BYTES, previewOf } from '@pyreach/protocol/results';
import {
  IN_FLIGHT_EXECUTION_STATES,
  canRequestTransition,
  executionStateCounts,
} from '@pyreach/protocol/states';
import type { Db, InjectionRequest, PrismaClient, Tx } from '@pyreach/db';
import { requireUser, type Actor } from './actor';
import { attestVote, type AttestationKey } from './attest';
import { appendAudit } from './audit';
import { contentHashOf } from './content';
import { completeIfDone } from './dispatch';
import { outcome, requestChanged, type Effect, type Outcome } from './effects';
import { AppError, isUniqueViolation, parseInput } from './errors';
import { attestEmergency, requireGrant } from './break-glass';
import { unconfirmedGovernanceOf } from './governance';
import { newId } from './ids';
import { preflightContentOf, preflightOf, refuseIfAllDoomed } from './preflight';
import { matchSelector } from './inventory';
import { checkScriptParams, getScript } from '@pyreach/scripts';
import { resolvePolicy, type EffectivePolicy } from './policy';
import { withRestoreToken } from './restore';
import { labelsOfProcesses } from './namespace-labels';
import { decisionOf, execErrorOf, executionStateOf, leftoverThreadOf, requestOf } from './rows';

export { MAX_ROLLOUT_CONCURRENCY } from '@pyreach/protocol/api';

/** sha256 of '' (the digest of an execution without output; the column's default). */
const EMPTY_DIGEST = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** A process's argv as the inventory stores it (JSON). */
const Cmdline = z.array(z.string());

/** A request as the services and the API see it: the row with its JSON columns parsed. */
export type Request = ReturnType<typeof requestOf<InjectionRequest>>;

export { contentHashOf, type RequestContent } from './content';

/**
 * Policy labels of every target process (namespace-labels.ts: its host's labels plus those an admin declared for
 * the namespace its agent reports it in): explicit processes one entry each; a selector its own labels, then one
 * entry per matching process. The policy of a request (and its preview) is resolved over these. Namespace
 * declarations count only when they verify with `key` (a process no verified declaration prices is
 * POLICY_DENIED, see processLabeler).
 */
export async function labelsOfTargets(
  db: Db,
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  targets: Targets,
): Promise<Labels[]> {
  if (targets.type === 'processes') {
    const labels = await labelsOfProcesses(db, key, targets.processes);
    return labels.map((l, i) => {
      if (l) return l;
      const id = targets.processes[i]!.agentId;
      throw new AppError('VALIDATION', `target agent ${id} is unknown or revoked`, {
        userMessage: `target agent ${id} is unknown or revoked`,
      });
    });
  }
  const matched = await matchSelector(db, { labels: targets.labels, process: targets.process });
  const labels = await labelsOfProcesses(db, key, matched);
  // The selector's own labels stand for hosts that may match it by dispatch time.
  return [targets.labels, ...labels.map((l, i) => l ?? matched[i]!.labels)];
}

function checkCustomCode(kind: string, policy: EffectivePolicy) {
  if (kind === 'custom' && !policy.allowCustomCode) {
    throw new AppError('POLICY_DENIED', 'custom code is not allowed for these targets', {
      userMessage: 'the policy for these targets allows library scripts only',
    });
  }
}

function approvalWindow(now: Date, policy: { approvalValidMinutes: number }) {
  return {
    approvedAt: now,
    approvalExpiresAt: new Date(now.getTime() + policy.approvalValidMinutes * 60_000),
  };
}

/**
 * A library request runs the library's own source, byte for byte, with parameters checked against the
 * script's schema (defaults filled in, so approvers see exactly what will travel). Otherwise "library" would
 * be a label anyone could put on custom code to get past a policy that forbids custom code.
 */
function libraryContent(
  scriptId: string,
  code: string | undefined,
  params: unknown,
  requestId: string,
): { code: string; params: JsonObject } {
  const script = getScript(scriptId);
  if (!script)
    throw new AppError('VALIDATION', `unknown library script '${scriptId}'`, {
      userMessage: `scriptId: no library script named '${scriptId}'`,
    });
  if (code !== undefined && code !== script.source) {
    throw new AppError('VALIDATION', `library request for ${scriptId} carries other code`, {
      userMessage: `code: a library request runs the library's source of ${scriptId}; send kind "custom" to run other code`,
    });
  }
  const checked = checkScriptParams(scriptId, params);
  if (!checked.ok)
    throw new AppError('VALIDATION', checked.message, { userMessage: `params: ${checked.message}` });
  // A change that undoes itself names its restore with the request id (in the hash: the follow-ups find it by it).
  return { code: script.source, params: withRestoreToken(scriptId, checked.params, requestId) as JsonObject };
}

/**
 * Files a request (operators and admins). The effective policy of its targets decides the approvals needed
 * (stored on the request with its approver roles and validity); custom code is refused with POLICY_DENIED
 * where any target's policy forbids it; 0 approvals ⇒ approved at once. Audited.
 */
export async function createRequest(
  db: PrismaClient,
  actor: Actor,
  input: CreateRequest,
  now: Date = new Date(),
  /**
   * The attestation key: verifies namespace declarations (without it no process in a namespace is priced) and
   * signs emergencies at filing and checks grants (`emergency: true` needs it).
   */
  attestation?: AttestationKey,
): Promise<Outcome<Request>> {
  const user = requireUser(actor, 'request:create');
  const parsed = parseInput(CreateRequest, input, 'request');
  const id = newId('req');
  const data =
    parsed.kind === 'library'
      ? { ...parsed, ...libraryContent(parsed.scriptId ?? '', parsed.code, parsed.params, id) }
      : { ...parsed, code: parsed.code! };
  const emergency = parsed.emergency === true;
  if (emergency && actor.type !== 'user')
    throw new AppError('PERSON_REQUIRED', `${actor.type} may not file an emergency`, {
      userMessage: 'emergency: break-glass is a person’s grant; API tokens cannot use it',
    });
  if (emergency && !attestation)
    throw new AppError('INTERNAL', 'break-glass needs the attestation key', {
      userMessage: 'internal error',
    });
  const policy = await resolvePolicy(db, attestation, await labelsOfTargets(db, attestation, data.targets), {
    kind: data.kind,
    scriptId: data.scriptId ?? null,
  });
  checkCustomCode(data.kind, policy);
  // Every target doomed (exited, remote debugging off, its agent's own policy forbids it): refused before filing.
  await refuseIfAllDoomed(
    db,
    data.targets,
    preflightContentOf({ ...data, scriptId: data.scriptId ?? null }),
    now,
  );
  // Break-glass: no votes; it runs now under the filer's grant, signed here, checked again at dispatch.
  const auto = policy.requiredApprovals === 0 || emergency;
  return db.$transaction(async (tx) => {
    const grant = emergency ? await requireGrant(tx, attestation!, user.id, now) : null;
    const contentHash = contentHashOf({
      ...data,
      scriptId: data.scriptId ?? null,
      emergencyReason: emergency ? data.emergencyReason : null,
    });
    const at = new Date(now.getTime());
    const req = await tx.injectionRequest.create({
      data: {
        id,
        ...(grant
          ? {
              emergency: true,
              emergencyReason: data.emergencyReason!,
              breakGlassGrantId: grant.id,
              breakGlassAt: at,
              afterReview: 'open',
              ...attestEmergency(attestation!, {
                requestId: id,
                contentHash,
                requesterId: user.id,
                grantId: grant.id,
                at: at.toISOString(),
              }),
            }
          : {}),
        kind: data.kind,
        scriptId: data.scriptId ?? null,
        code: data.code,
        params: data.params,
        targets: data.targets,
        options: data.options,
        rollout: data.rollout,
        contentHash,
        reason: data.reason,
        state: auto ? 'approved' : 'pending',
        requiredApprovals: policy.requiredApprovals,
        approverRoles: policy.approverRoles,
        approvalValidMinutes: policy.approvalValidMinutes,
        policyId: policy.policyId,
        requesterId: user.id,
        createdAt: now,
        ...(auto ? approvalWindow(now, policy) : {}),
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'request.create',
        subjectType: 'request',
        subjectId: req.id,
        data: {
          kind: req.kind,
          scriptId: req.scriptId,
          contentHash: req.contentHash,
          reason: req.reason,
          policyIds: policy.policyIds,
          requiredApprovals: policy.requiredApprovals,
          targets: data.targets,
          ...(grant ? { emergency: true } : {}),
        },
      },
      now,
    );
    if (grant)
      await appendAudit(
        tx,
        {
          actor,
          action: 'request.break_glass',
          subjectType: 'request',
          subjectId: req.id,
          data: {
            breakGlass: true,
            grantId: grant.id,
            reason: data.emergencyReason,
            contentHash,
            skippedApprovals: policy.requiredApprovals,
          },
        },
        now,
      );
    if (auto)
      await appendAudit(
        tx,
        {
          actor,
          action: 'request.approve',
          subjectType: 'request',
          subjectId: req.id,
          data: {
            automatic: !grant,
            ...(grant ? { emergency: true } : {}),
            approvalExpiresAt: req.approvalExpiresAt!.toISOString(),
          },
        },
        now,
      );
    const created = requestOf(req);
    // Policies with 0 approvals approve on creation: then there is work to dispatch.
    return outcome(created, [requestChanged(created), auto && { kind: 'wake', why: 'approved' }]);
  });
}

async function lockRequest(tx: Tx, id: string): Promise<InjectionRequest> {
  await tx.$queryRawUnsafe('SELECT id FROM "injection_request" WHERE id = $1 FOR UPDATE', id);
  const req = await tx.injectionRequest.findUnique({ where: { id } });
  if (!req) throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  return req;
}

/**
 * Edits a pending request (its requester only). A change to code, params, targets, any job option or the
 * rollout changes the content hash, bumps the revision and so voids every earlier approval (approvals count
 * only on the current hash); the reason alone does not. The policy is resolved again. Audited.
 */
export async function updateRequest(
  db: PrismaClient,
  actor: Actor,
  id: string,
  patch: UpdateRequest,
  now: Date = new Date(),
  /** Verifies namespace declarations (see labelsOfTargets). */
  attestation?: Pick<AttestationKey, 'publicKey'>,
): Promise<Outcome<Request>> {
  const user = requireUser(actor, 'request:create');
  const data = parseInput(UpdateRequest, patch, 'request');
  const current = await db.injectionRequest.findUnique({ where: { id } });
  if (!current)
    throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  const targets: Targets = data.targets ?? requestOf(current).targets;
  const policy = await resolvePolicy(db, attestation, await labelsOfTargets(db, attestation, targets), {
    kind: current.kind,
    scriptId: current.scriptId,
  });
  checkCustomCode(current.kind, policy);
  if (data.targets !== undefined || data.code !== undefined)
    await refuseIfAllDoomed(
      db,
      targets,
      preflightContentOf({
        kind: current.kind === 'library' ? 'library' : 'custom',
        scriptId: current.scriptId,
        code: data.code ?? current.code,
      }),
      now,
    );
  return db.$transaction(async (tx) => {
    const row = await lockRequest(tx, id);
    const req = requestOf(row);
    if (req.requesterId !== user.id)
      throw new AppError('FORBIDDEN', `user ${user.id} is not the requester of ${id}`, {
        userMessage: 'only the requester may edit a request',
      });
    if (req.state !== 'pending')
      throw new AppError('INVALID_STATE', `request ${id} is ${req.state}`, {
        userMessage: `a ${req.state} request cannot be edited`,
      });
    const next = {
      kind: req.kind,
      scriptId: req.scriptId,
      ...(req.kind === 'library'
        ? libraryContent(req.scriptId ?? '', data.code, data.params ?? req.params, req.id)
        : { code: data.code ?? req.code, params: data.params ?? req.params }),
      targets,
      options: data.options ?? req.options,
      rollout: data.rollout ?? req.rollout,
    };
    const contentHash = contentHashOf(next);
    const changed = contentHash !== req.contentHash;
    const updated = await tx.injectionRequest.update({
      where: { id },
      data: {
        code: next.code,
        params: next.params,
        targets: next.targets,
        contentHash,
        revision: changed ? req.revision + 1 : req.revision,
        reason: data.reason ?? req.reason,
        rollout: next.rollout,
        options: next.options,
        requiredApprovals: policy.requiredApprovals,
        approverRoles: policy.approverRoles,
        approvalValidMinutes: policy.approvalValidMinutes,
        policyId: policy.policyId,
        ...(policy.requiredApprovals === 0 ? { state: 'approved', ...approvalWindow(now, policy) } : {}),
      },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'request.update',
        subjectType: 'request',
        subjectId: id,
        data: { revision: updated.revision, contentHash, approvalsVoided: changed },
      },
      now,
    );
    const result = requestOf(updated);
    return outcome(result, [
      requestChanged(result),
      result.state === 'approved' && { kind: 'wake', why: 'approved' },
    ]);
  });
}

/**
 * Casts a vote. The reviewer must be a person whose role may review and is among the request's approver
 * roles, must not be the requester (SELF_APPROVAL), must have signed in within `reauthWindowMinutes` (default 5;
 * STALE_AUTH), and votes once per revision (ALREADY_VOTED). A rejection ends the request; enough approvals on
 * the current content hash approve it until `approvalExpiresAt`. Audited.
 */
export async function reviewRequest(
  db: PrismaClient,
  actor: Actor,
  id: string,
  input: ReviewInput,
  auth: {
    authenticatedAt: Date;
    reauthWindowMinutes?: number;
    now?: Date;
    /** The key the vote's attestation is signed with (held outside the database). */
    attestation: AttestationKey;
  },
): Promise<Outcome<Request>> {
  const user = requireUser(actor, 'request:review');
  const now = auth.now ?? new Date();
  const vote = parseInput(ReviewInput, input, 'review');
  const windowMs = (auth.reauthWindowMinutes ?? 5) * 60_000;
  if (now.getTime() - auth.authenticatedAt.getTime() > windowMs) {
    throw new AppError('STALE_AUTH', `sign-in of ${user.id} is older than the re-authentication window`, {
      userMessage: 'sign in again to review requests',
    });
  }
  try {
    const row = await db.$transaction(async (tx) => {
      const req = await lockRequest(tx, id);
      // A partly dispatched request collects further votes for the executions a stricter policy holds back.
      const awaiting =
        req.state === 'dispatching' &&
        (await tx.execution.count({ where: { requestId: id, state: 'awaiting_approval' } })) > 0;
      if (req.state !== 'pending' && !awaiting)
        throw new AppError('INVALID_STATE', `request ${id} is ${req.state}`, {
          userMessage: `a ${req.state} request cannot be reviewed`,
        });
      if (req.requesterId === user.id)
        throw new AppError('SELF_APPROVAL', `user ${user.id} tried to review own request ${id}`, {
          userMessage: 'you cannot review your own request',
        });
      if (!req.approverRoles.includes(user.role)) {
        throw new AppError('FORBIDDEN', `role ${user.role} may not approve request ${id}`, {
          userMessage: `this request needs a reviewer with role ${req.approverRoles.join(' or ')}`,
        });
      }
      const prior = await tx.review.findFirst({
        where: { requestId: id, reviewerId: user.id, contentHash: req.contentHash },
      });
      if (prior)
        throw new AppError('ALREADY_VOTED', `user ${user.id} already voted on ${id} rev ${req.revision}`, {
          userMessage: 'you already reviewed this revision',
        });
      const reviewId = newId('rev');
      // Stored times have millisecond precision: the attestation covers the time as it will read back.
      const at = new Date(now.getTime());
      await tx.review.create({
        data: {
          id: reviewId,
          requestId: id,
          reviewerId: user.id,
          decision: vote.decision,
          comment: vote.comment ?? null,
          contentHash: req.contentHash,
          createdAt: at,
          role: user.role,
          ...attestVote(auth.attestation, {
            reviewId,
            requestId: id,
            contentHash: req.contentHash,
            reviewerId: user.id,
            role: user.role,
            decision: vote.decision,
            at: at.toISOString(),
            requesterId: req.requesterId,
          }),
        },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: `review.${vote.decision}`,
          subjectType: 'request',
          subjectId: id,
          data: {
            revision: req.revision,
            contentHash: req.contentHash,
            comment: vote.comment ?? null,
            attestationId: reviewId,
            role: user.role,
          },
        },
        now,
      );
      if (awaiting && vote.decision === 'approve') return req;
      if (vote.decision === 'reject') {
        if (awaiting) {
          // Executions held for more approvals will not get them: they end cancelled; the rest finish.
          await tx.execution.updateMany({
            where: { requestId: id, state: 'awaiting_approval' },
            data: { state: 'cancelled', errorCode: 'REJECTED', finishedAt: now },
          });
          await appendAudit(
            tx,
            { actor, action: 'request.reject', subjectType: 'request', subjectId: id },
            now,
          );
          return req;
        }
        const r = await tx.injectionRequest.update({
          where: { id },
          data: { state: 'rejected', completedAt: now },
        });
        await appendAudit(
          tx,
          { actor, action: 'request.reject', subjectType: 'request', subjectId: id },
          now,
        );
        return r;
      }
      const approvals = await tx.review.count({
        where: { requestId: id, contentHash: req.contentHash, decision: 'approve' },
      });
      if (approvals < req.requiredApprovals) return req;
      const r = await tx.injectionRequest.update({
        where: { id },
        data: { state: 'approved', ...approvalWindow(now, req) },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: 'request.approve',
          subjectType: 'request',
          subjectId: id,
          data: { approvals, approvalExpiresAt: r.approvalExpiresAt!.toISOString() },
        },
        now,
      );
      return r;
    });
    const result = requestOf(row);
    return outcome(result, [
      requestChanged(result),
      (result.state === 'approved' || result.state === 'dispatching') && { kind: 'wake', why: 'approved' },
    ]);
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('ALREADY_VOTED', `concurrent duplicate vote on ${id}`, {
        userMessage: 'you already reviewed this revision',
      });
    throw err;
  }
}

/**
 * Cancels a request: its requester or an admin. Pending/approved requests end as `cancelled`. A dispatching
 * one has its queued executions cancelled and every in-flight one (sent, staged, picked up) told to stop:
 * `job:cancel` to its agent (a `cancel-job` effect), which stops running code the way the time budget does and
 * reports the execution `cancelled` with its output so far (or that the code could not be interrupted, naming
 * the leftover thread). The request stays dispatching until each has ended, then ends `cancelled`; with
 * nothing in flight it ends at once. Cancelling again re-sends the cancels. Audited.
 */
export async function cancelRequest(
  db: PrismaClient,
  actor: Actor,
  id: string,
  reason?: string,
  now: Date = new Date(),
): Promise<Outcome<Request>> {
  const user = requireUser(actor, 'request:cancel');
  const { row, stopping } = await db.$transaction(async (tx) => {
    const req = await lockRequest(tx, id);
    if (req.requesterId !== user.id && user.role !== 'admin')
      throw new AppError('FORBIDDEN', `user ${user.id} may not cancel ${id}`, {
        userMessage: 'only the requester or an admin may cancel a request',
      });
    let updated: InjectionRequest;
    let stopping: { agentId: string; jobId: string }[] = [];
    if (canRequestTransition(requestOf(req).state, 'cancelled') && req.state !== 'dispatching') {
      updated = await tx.injectionRequest.update({
        where: { id },
        data: { state: 'cancelled', completedAt: now },
      });
    } else if (req.state === 'dispatching') {
      await tx.execution.updateMany({
        where: { requestId: id, state: { in: ['queued', 'awaiting_approval'] } },
        data: {
          state: 'cancelled',
          errorCode: 'CANCELLED',
          errorMessage: 'cancelled before it was sent',
          finishedAt: now,
        },
      });
      stopping = await tx.execution.findMany({
        where: { requestId: id, state: { in: [...IN_FLIGHT_EXECUTION_STATES] } },
        select: { agentId: true, jobId: true },
      });
      await tx.injectionRequest.update({
        where: { id },
        data: { cancelRequestedAt: req.cancelRequestedAt ?? now },
      });
      await completeIfDone(tx, id, now);
      updated = await tx.injectionRequest.findUniqueOrThrow({ where: { id } });
    } else {
      throw new AppError('INVALID_STATE', `request ${id} is ${req.state}`, {
        userMessage: `a ${req.state} request cannot be cancelled`,
      });
    }
    await appendAudit(
      tx,
      {
        actor,
        action: 'request.cancel',
        subjectType: 'request',
        subjectId: id,
        data: {
          reason: reason ?? null,
          from: req.state,
          ...(req.state === 'dispatching' ? { stopping: stopping.map((e) => e.jobId) } : {}),
        },
      },
      now,
    );
    return { row: updated, stopping };
  });
  const result = requestOf(row);
  // A dispatching request stays so until its in-flight executions report they stopped.
  return outcome(result, [
    requestChanged(result),
    ...stopping.map((e): Effect => ({ kind: 'cancel-job', agentId: e.agentId, jobId: e.jobId })),
    { kind: 'wake', why: 'cancelled' },
  ]);
}

const EXECUTION_DETAIL = {
  id: true,
  agentId: true,
  pid: true,
  startTime: true,
  jobId: true,
  state: true,
  errorCode: true,
  lastSeq: true,
  outputBytes: true,
  outputDroppedBytes: true,
  result: true,
  errorMessage: true,
  error: true,
  thread: true,
  queuedBehindJobId: true,
  queuedAhead: true,
  leftoverThread: true,
  queuedAt: true,
  sentAt: true,
  stagedAt: true,
  pickedUpAt: true,
  finishedAt: true,
} as const;

/**
 * What the request detail carries of each execution's output (see ExecutionDetail): its first
 * OUTPUT_PREVIEW_BYTES, whether the stored output goes on past them, and the digest of the whole of it. The cut
 * is made in SQL so a whole output is never read for the page: `left()` counts characters (at most 4 bytes of
 * UTF-8 each), so at most 4 × OUTPUT_PREVIEW_BYTES of each output leave the database (PostgreSQL decompresses
 * only the slice it needs), and previewOf makes the exact cut on bytes; `octet_length` reads the stored size
 * from the value's header without decompressing it.
 */
async function outputPreviews(db: Db, requestId: string) {
  const rows = await db.$queryRaw<{ id: string; head: string; octets: number; digest: string }[]>`
    SELECT "id", left("output", ${OUTPUT_PREVIEW_BYTES}::int) AS "head", octet_length("output") AS "octets",
           "outputDigest" AS "digest"
    FROM "execution" WHERE "requestId" = ${requestId}`;
  return new Map(
    rows.map((r) => {
      const { text, cut } = previewOf(r.head);
      return [
        r.id,
        {
          output: text,
          outputPreview: cut || Number(r.octets) > Buffer.byteLength(text),
          outputDigest: r.digest,
        },
      ];
    }),
  );
}

/** The target processes of these executions as the inventory last saw them, by `agentId pid startTime`. */
async function processesOf(
  db: Db,
  executions: readonly { agentId: string; pid: number; startTime: string }[],
): Promise<Map<string, ExecutionDetail['process']>> {
  if (executions.length === 0) return new Map();
  const rows = await db.pythonProcess.findMany({
    where: {
      host: { agentId: { in: [...new Set(executions.map((e) => e.agentId))] } },
      pid: { in: [...new Set(executions.map((e) => e.pid))] },
    },
    select: {
      pid: true,
      startTime: true,
      exe: true,
      cmdline: true,
      inContainer: true,
      container: true,
      host: { select: { agentId: true } },
    },
  });
  return new Map(
    rows.map((p) => [
      `${p.host.agentId} ${p.pid} ${p.startTime}`,
      {
        exe: p.exe,
        cmdline: Cmdline.catch([]).parse(p.cmdline),
        inContainer: p.inContainer,
        container: p.container,
      },
    ]),
  );
}

/**
 * A request with its reviews, approval count and executions (results, a preview of each output with the digest
 * of the whole of it, the target process); NOT_FOUND if absent.
 *
 * Its reads are one snapshot (REPEATABLE READ): an execution's report sequence (`seq`, what the page's pushes
 * continue from), its state and its output preview come from separate statements, and a report committed between
 * them would otherwise show a chunk twice or skip one. (PGlite has one connection: a transaction is a snapshot.)
 */
export async function getRequest(db: Db, id: string) {
  return '$transaction' in db
    ? db.$transaction((tx) => readRequest(tx, id), { isolationLevel: 'RepeatableRead', timeout: 30_000 })
    : readRequest(db, id);
}

async function readRequest(db: Db, id: string) {
  const req = await db.injectionRequest.findUnique({
    where: { id },
    include: {
      reviews: { orderBy: { createdAt: 'asc' } },
      executions: { select: EXECUTION_DETAIL, orderBy: { queuedAt: 'asc' } },
    },
  });
  if (!req) throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  const current = req.reviews.filter((r) => r.contentHash === req.contentHash);
  // "Queued behind job X": the request that job belongs to, when it is one of ours.
  const behind = req.executions.flatMap((e) => (e.queuedBehindJobId ? [e.queuedBehindJobId] : []));
  const behindRequest = new Map(
    behind.length === 0
      ? []
      : (
          await db.execution.findMany({
            where: { jobId: { in: behind } },
            select: { jobId: true, requestId: true },
          })
        ).map((e) => [e.jobId, e.requestId]),
  );
  const [previews, processes] = await Promise.all([
    outputPreviews(db, req.id),
    processesOf(db, req.executions),
  ]);
  const executions = req.executions.map(
    ({ queuedBehindJobId, queuedAhead, leftoverThread, lastSeq, ...e }) => ({
      ...e,
      // An execution planned between the two reads has no output yet.
      ...(previews.get(e.id) ?? { output: '', outputPreview: false, outputDigest: EMPTY_DIGEST }),
      process: processes.get(`${e.agentId} ${e.pid} ${e.startTime}`) ?? null,
      seq: lastSeq,
      state: executionStateOf(e.state),
      error: execErrorOf(e.error),
      queuedBehind: queuedBehindJobId
        ? {
            jobId: queuedBehindJobId,
            requestId: behindRequest.get(queuedBehindJobId) ?? null,
            ahead: queuedAhead ?? 1,
          }
        : null,
      leftoverThread: leftoverThreadOf(leftoverThread),
    }),
  );
  const flagged = await unconfirmedGovernanceOf(db, [req]);
  return {
    ...requestOf(req),
    unconfirmedGovernance: flagged.has(req.id),
    reviews: req.reviews.map((r) => ({ ...r, decision: decisionOf(r.decision) })),
    executions,
    executionCounts: executionStateCounts(executions.map((e) => e.state)),
    /** Approvals cast on the current content hash (the only ones that count). */
    approvals: current.filter((r) => r.decision === 'approve').length,
    /** Reviews cast on an earlier revision, voided by an edit. */
    voidedReviews: req.reviews.length - current.length,
  };
}
export type RequestDetail = Awaited<ReturnType<typeof readRequest>>;

/** Each target's pre-flight verdict for a filed request, evaluated now (NOT_FOUND if absent). */
export async function requestPreflight(db: Db, id: string, now: Date = new Date()) {
  const row = await db.injectionRequest.findUnique({ where: { id } });
  if (!row) throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  const req = requestOf(row);
  const kind = req.kind === 'library' ? 'library' : 'custom';
  return preflightOf(
    db,
    req.targets,
    preflightContentOf({ kind, scriptId: req.scriptId, code: req.code }),
    now,
  );
}

/** Requests newest first, keyset-paginated on (createdAt, id) via `cursor` = last id. */
export async function listRequests(
  db: Db,
  filter: { state?: string; requesterId?: string; review?: 'after'; cursor?: string; limit?: number } = {},
): Promise<{ items: (Request & { unconfirmedGovernance: boolean })[]; nextCursor: string | null }> {
  const limit = Math.min(Math.max(filter.limit ?? 50, 1), 200);
  const items = await db.injectionRequest.findMany({
    where: {
      ...(filter.state ? { state: filter.state } : {}),
      ...(filter.requesterId ? { requesterId: filter.requesterId } : {}),
      ...(filter.review === 'after' ? { afterReview: 'open' } : {}),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: limit,
    ...(filter.cursor ? { cursor: { id: filter.cursor }, skip: 1 } : {}),
  });
  const flagged = await unconfirmedGovernanceOf(db, items);
  return {
    items: items.map((r) => ({ ...requestOf(r), unconfirmedGovernance: flagged.has(r.id) })),
    nextCursor: items.length === limit ? items.at(-1)!.id : null,
  };
}

/**
 * Which policy a request on these targets would fall under, before it is filed: the same resolution as at
 * creation (the labels of every target host), answered without storing anything, so the form can say "needs 2
 * approvals from approver/admin" up front.
 */
export async function previewPolicy(
  db: Db,
  input: { targets: TargetsInput; kind?: 'library' | 'custom'; scriptId?: string },
  /** Verifies namespace declarations (see labelsOfTargets). */
  attestation?: Pick<AttestationKey, 'publicKey'>,
) {
  const { targets, kind, scriptId } = parseInput(PolicyPreviewBody, input, 'policy preview');
  const labels = await labelsOfTargets(db, attestation, targets);
  // For a selector the labels are its own, then one entry per matching process.
  const matched = targets.type === 'processes' ? targets.processes.length : labels.length - 1;
  const eff = await resolvePolicy(db, attestation, labels, {
    kind: kind ?? 'custom',
    scriptId: scriptId ?? null,
  });
  const policies = await db.policy.findMany({
    where: { id: { in: eff.policyIds } },
    select: { id: true, name: true, description: true },
  });
  return {
    matched,
    policy: policies.find((p) => p.id === eff.policyId) ?? null,
    policies,
    requiredApprovals: eff.requiredApprovals,
    approverRoles: eff.approverRoles,
    allowCustomCode: eff.allowCustomCode,
    approvalValidMinutes: eff.approvalValidMinutes,
    customDenied: kind === 'custom' && !eff.allowCustomCode,
  };
}

/**
 * One execution's whole stored output, for download: its raw bytes (the stored safe text decoded back to what
 * the target printed) and a file name made of ids only. NOT_FOUND when the execution is not one of this
 * request's (an id from another request does not read through this one's path).
 */
export async function executionOutput(db: Db, requestId: string, executionId: string) {
  const ex = await db.execution.findFirst({
    where: { id: executionId, requestId },
    select: { id: true, pid: true, output: true, outputDroppedBytes: true },
  });
  if (!ex)
    throw new AppError('NOT_FOUND', `execution ${executionId} of request ${requestId} not found`, {
      userMessage: 'execution not found',
    });
  return {
    bytes: decodeToBytes(ex.output),
    fileName: `pyreach-${requestId}-${ex.id}-pid${ex.pid}.txt`,
    droppedBytes: ex.outputDroppedBytes,
  };
}
