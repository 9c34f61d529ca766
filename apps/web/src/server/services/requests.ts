import { z } from 'zod';
import { canonicalJson, sha256Hex } from '@pyreach/protocol/canonical';
import {
  Id,
  JsonObject,
  Labels,
  MAX_CODE_BYTES,
  MAX_PARAMS_BYTES,
  jsonBytes,
} from '@pyreach/protocol/common';
import { JobOptions } from '@pyreach/protocol/job';
import type { Db, InjectionRequest, PrismaClient, Review, Tx } from '@pyreach/db';
import { can, requireUser, type Actor } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation } from './errors';
import { newId } from './ids';
import { matchSelector } from './inventory';
import { checkScriptParams, getScript } from '@pyreach/scripts';
import { resolvePolicy, type EffectivePolicy } from './policy';

export const ExplicitTarget = z.object({
  agentId: Id,
  pid: z.number().int().positive(),
  startTime: z.string().regex(/^\d+$/),
  tid: z.number().int().positive().optional(),
});
export const Targets = z.discriminatedUnion('type', [
  z.object({ type: z.literal('processes'), processes: z.array(ExplicitTarget).min(1).max(1000) }),
  z.object({
    type: z.literal('selector'),
    labels: Labels,
    process: z
      .object({
        cmdlineContains: z.string().max(256).optional(),
        user: z.string().max(256).optional(),
        exeContains: z.string().max(256).optional(),
      })
      .default({}),
  }),
]);
export type Targets = z.infer<typeof Targets>;

/**
 * The most executions a request may keep in flight: as many targets as it may name explicitly. A wave is claimed
 * in one transaction and the rollout counted with aggregate queries, so sending 1,000 at once costs a few
 * statements rather than 2,000 transactions; the blast radius stays the operator's choice (default 1).
 */
export const MAX_ROLLOUT_CONCURRENCY = 1000;

export const Rollout = z.object({
  /** Executions in flight at once. */
  concurrency: z.number().int().min(1).max(MAX_ROLLOUT_CONCURRENCY).default(1),
  /** Failures after which the rest is cancelled. */
  maxFailures: z.number().int().min(1).max(10_000).default(1),
});
export type Rollout = z.infer<typeof Rollout>;

export const CreateRequestInput = z
  .object({
    kind: z.enum(['library', 'custom']),
    /** Library script id (kind = library); the caller passes that script's source as `code`. */
    scriptId: z.string().min(1).max(128).nullable().optional(),
    code: z.string().min(1).max(MAX_CODE_BYTES),
    params: JsonObject.default({}).refine((p) => jsonBytes(p) <= MAX_PARAMS_BYTES, 'params are too large'),
    targets: Targets,
    reason: z.string().trim().min(3).max(2000),
    rollout: Rollout.default({ concurrency: 1, maxFailures: 1 }),
    options: JobOptions.default({
      inline: false,
      budgetSeconds: 30,
      pickupTimeoutSeconds: 10,
      backend: 'native',
    }),
  })
  .refine((r) => (r.kind === 'library') === Boolean(r.scriptId), {
    message: 'scriptId is required for library requests and only for them',
    path: ['scriptId'],
  });
export type CreateRequestInput = z.input<typeof CreateRequestInput>;

export const UpdateRequestInput = z.object({
  code: z.string().min(1).max(MAX_CODE_BYTES).optional(),
  params: JsonObject.refine((p) => jsonBytes(p) <= MAX_PARAMS_BYTES, 'params are too large').optional(),
  targets: Targets.optional(),
  reason: z.string().trim().min(3).max(2000).optional(),
  rollout: Rollout.optional(),
  options: JobOptions.optional(),
});
export type UpdateRequestInput = z.input<typeof UpdateRequestInput>;

/** SHA-256 hex of the canonical JSON of {code, params, targets}: what approvers approve. */
export function contentHashOf(v: { code: string; params: unknown; targets: unknown }): string {
  return sha256Hex(canonicalJson({ code: v.code, params: v.params, targets: v.targets }));
}

function parseOrThrow<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const r = schema.safeParse(input);
  if (!r.success)
    throw new AppError('VALIDATION', `invalid request: ${z.prettifyError(r.error)}`, {
      details: r.error.issues,
    });
  return r.data;
}

/** Host labels of every target: explicit processes → their agents; selector → matching hosts + the selector. */
async function labelsOfTargets(db: Db, targets: Targets): Promise<Labels[]> {
  if (targets.type === 'processes') {
    const ids = [...new Set(targets.processes.map((p) => p.agentId))];
    const agents = await db.agent.findMany({
      where: { id: { in: ids } },
      select: { id: true, labels: true, revokedAt: true },
    });
    for (const id of ids) {
      const a = agents.find((x) => x.id === id);
      if (!a || a.revokedAt)
        throw new AppError('VALIDATION', `target agent ${id} is unknown or revoked`, {
          userMessage: `target agent ${id} is unknown or revoked`,
        });
    }
    return agents.map((a) => a.labels as Labels);
  }
  const matched = await matchSelector(db, { labels: targets.labels, process: targets.process });
  // The selector's own labels stand for hosts that may match it by dispatch time.
  return [targets.labels, ...matched.map((m) => m.labels)];
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
  return { code: script.source, params: checked.params };
}

/**
 * Files a request (operators and admins). The effective policy of its targets decides the approvals needed
 * (stored on the request with its approver roles and validity); custom code is refused with POLICY_DENIED
 * where any target's policy forbids it; 0 approvals ⇒ approved at once. Audited.
 */
export async function createRequest(
  db: PrismaClient,
  actor: Actor,
  input: CreateRequestInput,
  now: Date = new Date(),
): Promise<InjectionRequest> {
  const user = requireUser(actor, 'request:create');
  const parsed = parseOrThrow(CreateRequestInput, input);
  const data =
    parsed.kind === 'library'
      ? { ...parsed, ...libraryContent(parsed.scriptId ?? '', parsed.code, parsed.params) }
      : parsed;
  const policy = await resolvePolicy(db, await labelsOfTargets(db, data.targets));
  checkCustomCode(data.kind, policy);
  const auto = policy.requiredApprovals === 0;
  return db.$transaction(async (tx) => {
    const req = await tx.injectionRequest.create({
      data: {
        id: newId('req'),
        kind: data.kind,
        scriptId: data.scriptId ?? null,
        code: data.code,
        params: data.params,
        targets: data.targets,
        options: data.options,
        rollout: data.rollout,
        contentHash: contentHashOf(data),
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
          data: { automatic: true, approvalExpiresAt: req.approvalExpiresAt!.toISOString() },
        },
        now,
      );
    return req;
  });
}

async function lockRequest(tx: Tx, id: string): Promise<InjectionRequest> {
  await tx.$queryRawUnsafe('SELECT id FROM "injection_request" WHERE id = $1 FOR UPDATE', id);
  const req = await tx.injectionRequest.findUnique({ where: { id } });
  if (!req) throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  return req;
}

/**
 * Edits a pending request (its requester only). A change to code, params or targets changes the content hash,
 * bumps the revision and so voids every earlier approval (approvals count only on the current hash); the
 * policy is resolved again. Audited.
 */
export async function updateRequest(
  db: PrismaClient,
  actor: Actor,
  id: string,
  patch: UpdateRequestInput,
  now: Date = new Date(),
): Promise<InjectionRequest> {
  const user = requireUser(actor, 'request:create');
  const data = parseOrThrow(UpdateRequestInput, patch);
  const current = await db.injectionRequest.findUnique({ where: { id } });
  if (!current)
    throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  const targets = (data.targets ?? current.targets) as Targets;
  const policy = await resolvePolicy(db, await labelsOfTargets(db, targets));
  checkCustomCode(current.kind, policy);
  return db.$transaction(async (tx) => {
    const req = await lockRequest(tx, id);
    if (req.requesterId !== user.id)
      throw new AppError('FORBIDDEN', `user ${user.id} is not the requester of ${id}`, {
        userMessage: 'only the requester may edit a request',
      });
    if (req.state !== 'pending')
      throw new AppError('INVALID_STATE', `request ${id} is ${req.state}`, {
        userMessage: `a ${req.state} request cannot be edited`,
      });
    const next =
      req.kind === 'library'
        ? { ...libraryContent(req.scriptId ?? '', data.code, data.params ?? req.params), targets }
        : { code: data.code ?? req.code, params: data.params ?? req.params, targets };
    const contentHash = contentHashOf(next);
    const changed = contentHash !== req.contentHash;
    const updated = await tx.injectionRequest.update({
      where: { id },
      data: {
        code: next.code,
        params: next.params as object,
        targets: next.targets,
        contentHash,
        revision: changed ? req.revision + 1 : req.revision,
        reason: data.reason ?? req.reason,
        rollout: data.rollout ?? (req.rollout as object),
        options: data.options ?? (req.options as object),
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
    return updated;
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
  vote: { decision: 'approve' | 'reject'; comment?: string },
  auth: { authenticatedAt: Date; reauthWindowMinutes?: number; now?: Date },
): Promise<InjectionRequest> {
  const user = requireUser(actor, 'request:review');
  const now = auth.now ?? new Date();
  if (vote.decision !== 'approve' && vote.decision !== 'reject')
    throw new AppError('VALIDATION', 'decision must be approve or reject');
  if (vote.comment !== undefined && vote.comment.length > 2000)
    throw new AppError('VALIDATION', 'comment is too long');
  const windowMs = (auth.reauthWindowMinutes ?? 5) * 60_000;
  if (now.getTime() - auth.authenticatedAt.getTime() > windowMs) {
    throw new AppError('STALE_AUTH', `sign-in of ${user.id} is older than the re-authentication window`, {
      userMessage: 'sign in again to review requests',
    });
  }
  try {
    return await db.$transaction(async (tx) => {
      const req = await lockRequest(tx, id);
      if (req.state !== 'pending')
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
      await tx.review.create({
        data: {
          id: newId('rev'),
          requestId: id,
          reviewerId: user.id,
          decision: vote.decision,
          comment: vote.comment ?? null,
          contentHash: req.contentHash,
          createdAt: now,
        },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: `review.${vote.decision}`,
          subjectType: 'request',
          subjectId: id,
          data: { revision: req.revision, contentHash: req.contentHash, comment: vote.comment ?? null },
        },
        now,
      );
      if (vote.decision === 'reject') {
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
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('ALREADY_VOTED', `concurrent duplicate vote on ${id}`, {
        userMessage: 'you already reviewed this revision',
      });
    throw err;
  }
}

/**
 * Cancels a request: its requester or an admin. Pending/approved requests end as `cancelled`; a dispatching
 * one has its queued executions cancelled (in-flight ones finish) and completes when they do. Audited.
 */
export async function cancelRequest(
  db: PrismaClient,
  actor: Actor,
  id: string,
  reason?: string,
  now: Date = new Date(),
): Promise<InjectionRequest> {
  const user = requireUser(actor, 'request:cancel');
  return db.$transaction(async (tx) => {
    const req = await lockRequest(tx, id);
    if (req.requesterId !== user.id && user.role !== 'admin')
      throw new AppError('FORBIDDEN', `user ${user.id} may not cancel ${id}`, {
        userMessage: 'only the requester or an admin may cancel a request',
      });
    let updated: InjectionRequest;
    if (req.state === 'pending' || req.state === 'approved') {
      updated = await tx.injectionRequest.update({
        where: { id },
        data: { state: 'cancelled', completedAt: now },
      });
    } else if (req.state === 'dispatching') {
      await tx.execution.updateMany({
        where: { requestId: id, state: 'queued' },
        data: { state: 'cancelled', finishedAt: now },
      });
      updated = req;
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
        data: { reason: reason ?? null, from: req.state },
      },
      now,
    );
    return updated;
  });
}

export type RequestDetail = InjectionRequest & {
  reviews: Review[];
  /** Approvals cast on the current content hash (the only ones that count). */
  approvals: number;
  /** Reviews cast on an earlier revision, voided by an edit. */
  voidedReviews: number;
  executions: {
    id: string;
    agentId: string;
    pid: number;
    startTime: string;
    jobId: string;
    state: string;
    errorCode: string | null;
  }[];
};

/** A request with its reviews, approval count and executions; NOT_FOUND if absent. */
export async function getRequest(db: Db, id: string): Promise<RequestDetail> {
  const req = await db.injectionRequest.findUnique({
    where: { id },
    include: {
      reviews: { orderBy: { createdAt: 'asc' } },
      executions: {
        select: {
          id: true,
          agentId: true,
          pid: true,
          startTime: true,
          jobId: true,
          state: true,
          errorCode: true,
        },
        orderBy: { queuedAt: 'asc' },
      },
    },
  });
  if (!req) throw new AppError('NOT_FOUND', `request ${id} not found`, { userMessage: 'request not found' });
  const current = req.reviews.filter((r) => r.contentHash === req.contentHash);
  return {
    ...req,
    approvals: current.filter((r) => r.decision === 'approve').length,
    voidedReviews: req.reviews.length - current.length,
  };
}

/** Requests newest first, keyset-paginated on (createdAt, id) via `cursor` = last id. */
export async function listRequests(
  db: Db,
  filter: { state?: string; requesterId?: string; cursor?: string; limit?: number } = {},
): Promise<{ items: InjectionRequest[]; nextCursor: string | null }> {
  const limit = Math.min(Math.max(filter.limit ?? 50, 1), 200);
  const items = await db.injectionRequest.findMany({
    where: {
      ...(filter.state ? { state: filter.state } : {}),
      ...(filter.requesterId ? { requesterId: filter.requesterId } : {}),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: limit,
    ...(filter.cursor ? { cursor: { id: filter.cursor }, skip: 1 } : {}),
  });
  return { items, nextCursor: items.length === limit ? items.at(-1)!.id : null };
}

/** Whether this user may review this request at all (for the UI: hide the buttons otherwise). */
export function mayReview(
  actor: Actor,
  req: Pick<InjectionRequest, 'requesterId' | 'approverRoles' | 'state'>,
): boolean {
  return (
    actor.type === 'user' &&
    can(actor.role, 'request:review') &&
    req.state === 'pending' &&
    req.requesterId !== actor.id &&
    req.approverRoles.includes(actor.role)
  );
}
