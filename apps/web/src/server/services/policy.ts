import { PolicyAction, PolicyInput, type PolicyRow } from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import type { Db, Policy, PrismaClient } from '@pyreach/db';
import { ROLES, requireUser, type Actor, type Role } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation, parseInput } from './errors';
import { newId } from './ids';
import { getScript } from '@pyreach/scripts';
import { labelsOf, rolesOf } from './rows';

const actionOf = (v: unknown): PolicyAction => {
  const r = PolicyAction.safeParse(v);
  if (!r.success)
    throw new AppError('INTERNAL', 'stored policy matchAction does not match its schema', {
      userMessage: 'internal error',
    });
  return r.data;
};

/** What a request does, as policies match it: custom code or which library script. */
export interface RequestAction {
  kind: string;
  scriptId: string | null;
}

/**
 * Whether a request may run with no approval at all: only a library script marked both read-only and
 * non-sensitive (an explicit flag on the script; `interpreter.info` returns argv and is sensitive). Anything
 * else needs at least one person besides the requester, whatever a policy says.
 */
export function mayRunUnapproved(action: RequestAction): boolean {
  if (action.kind !== 'library' || !action.scriptId) return false;
  const s = getScript(action.scriptId);
  return Boolean(s && s.readOnly && !s.sensitive);
}

function actionMatches(m: PolicyAction, action: RequestAction | undefined): boolean {
  if (!action) return Object.keys(m).length === 0;
  if (m.kinds && !m.kinds.some((k) => k === action.kind)) return false;
  if (m.scripts && !(action.scriptId && m.scripts.includes(action.scriptId))) return false;
  if (m.risks) {
    const risk = action.scriptId ? getScript(action.scriptId)?.risk : undefined;
    // Custom code has no declared risk: it matches only a policy that names the highest.
    if (!m.risks.includes(risk ?? 'high')) return false;
  }
  return true;
}

/** Approver roles a 0-approval policy lends when the action still needs a person (no one alone). */
const DEFAULT_APPROVER_ROLES: Role[] = ['approver', 'admin'];

export type { PolicyInput };

/** A policy row with its JSON columns parsed. */
export function policyOf(p: Policy): Policy & PolicyRow {
  return {
    ...p,
    matchLabels: labelsOf(p.matchLabels),
    matchAction: actionOf(p.matchAction),
    approverRoles: rolesOf(p.approverRoles),
  };
}

/** What applies to a request: the strictest combination of the policy of every target host. */
export interface EffectivePolicy {
  /** The policy that set the approval count (the strictest); stored as the request's policyId. */
  policyId: string;
  /** Every policy that applied to some target. */
  policyIds: string[];
  requiredApprovals: number;
  approverRoles: Role[];
  allowCustomCode: boolean;
  approvalValidMinutes: number;
}

const parse = (input: unknown) => parseInput(PolicyInput, input, 'policy');

/** Creates a policy (admin only). Name conflicts are CONFLICT. */
export async function createPolicy(db: PrismaClient, actor: Actor, input: PolicyInput): Promise<PolicyRow> {
  requireUser(actor, 'policy:manage');
  const data = parse(input);
  try {
    return await db.$transaction(async (tx) => {
      const p = await tx.policy.create({
        data: { id: newId('pol'), ...data, description: data.description ?? null },
      });
      await appendAudit(tx, {
        actor,
        action: 'policy.create',
        subjectType: 'policy',
        subjectId: p.id,
        data: { ...data },
      });
      return policyOf(p);
    });
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('CONFLICT', `policy ${data.name} exists`, {
        userMessage: 'a policy with this name exists',
      });
    throw err;
  }
}

/** Replaces a policy's rules (admin only). Requests already created keep the rules they were created under. */
export async function updatePolicy(
  db: PrismaClient,
  actor: Actor,
  id: string,
  input: PolicyInput,
): Promise<PolicyRow> {
  requireUser(actor, 'policy:manage');
  const data = parse(input);
  return db.$transaction(async (tx) => {
    const before = await tx.policy.findUnique({ where: { id } });
    if (!before)
      throw new AppError('NOT_FOUND', `policy ${id} not found`, { userMessage: 'policy not found' });
    const p = await tx.policy.update({
      where: { id },
      data: { ...data, description: data.description ?? null },
    });
    await appendAudit(tx, {
      actor,
      action: 'policy.update',
      subjectType: 'policy',
      subjectId: id,
      data: { ...data },
    });
    return policyOf(p);
  });
}

/** Deletes a policy (admin only); the `default` policy cannot be deleted (edit it instead). */
export async function deletePolicy(db: PrismaClient, actor: Actor, id: string): Promise<void> {
  requireUser(actor, 'policy:manage');
  if (id === 'default')
    throw new AppError('INVALID_STATE', 'the default policy cannot be deleted', {
      userMessage: 'the default policy cannot be deleted; edit it instead',
    });
  await db.$transaction(async (tx) => {
    const res = await tx.policy.deleteMany({ where: { id } });
    if (res.count !== 1)
      throw new AppError('NOT_FOUND', `policy ${id} not found`, { userMessage: 'policy not found' });
    await appendAudit(tx, { actor, action: 'policy.delete', subjectType: 'policy', subjectId: id });
  });
}

/** All policies, highest priority first. */
export async function listPolicies(db: Db): Promise<(Policy & PolicyRow)[]> {
  return (await db.policy.findMany({ orderBy: [{ priority: 'desc' }, { name: 'asc' }] })).map(policyOf);
}

/** One policy, or NOT_FOUND. */
export async function getPolicy(db: Db, id: string): Promise<PolicyRow> {
  const p = await db.policy.findUnique({ where: { id } });
  if (!p) throw new AppError('NOT_FOUND', `policy ${id} not found`, { userMessage: 'policy not found' });
  return policyOf(p);
}

/**
 * The policy that applies to one host and action: highest priority whose matchLabels all match the host's
 * labels (the join token's or an admin's, never what the agent reports) and whose matchAction matches what the
 * request does (name breaks ties). Without an action, only policies that match every action apply.
 */
export function policyForHost<P extends PolicyRow>(
  policies: P[],
  labels: Labels,
  action?: RequestAction,
): P | undefined {
  return policies
    .filter((p) => Object.entries(p.matchLabels).every(([k, v]) => labels[k] === v))
    .filter((p) => actionMatches(p.matchAction, action))
    .sort((a, b) => b.priority - a.priority || a.name.localeCompare(b.name))[0];
}

/**
 * Resolves the effective policy for a request whose targets run on hosts with these labels (one entry per
 * target host). Per host, the highest-priority matching policy; across hosts, the strictest combination:
 * most approvals, intersection of approver roles, custom code only if every policy allows it, shortest
 * validity. POLICY_DENIED when a host matches no policy, or when the intersection leaves no one who may
 * approve a request that needs approvals. With no targets at all, the policy for a host without labels.
 * No one alone: a policy's 0 approvals hold only for read-only, non-sensitive library scripts
 * (`mayRunUnapproved`); anything else needs at least one approval (from approver/admin if the policy named none).
 */
export async function resolvePolicy(
  db: Db,
  labelsOfEveryTarget: Labels[],
  action?: RequestAction,
): Promise<EffectivePolicy> {
  const policies = (await db.policy.findMany()).map(policyOf);
  const targets = labelsOfEveryTarget.length > 0 ? labelsOfEveryTarget : [{}];
  const applied = new Map<string, PolicyRow>();
  for (const labels of targets) {
    const p = policyForHost(policies, labels, action);
    if (!p)
      throw new AppError('POLICY_DENIED', `no policy matches host labels ${JSON.stringify(labels)}`, {
        userMessage: 'no policy covers one of the targets',
      });
    applied.set(p.id, p);
  }
  const unapproved = action !== undefined && mayRunUnapproved(action);
  const list = [...applied.values()].map((p) =>
    p.requiredApprovals === 0 && !unapproved
      ? {
          ...p,
          requiredApprovals: 1,
          approverRoles: p.approverRoles.length ? p.approverRoles : DEFAULT_APPROVER_ROLES,
        }
      : p,
  );
  const strictest = list.reduce((a, b) => (b.requiredApprovals > a.requiredApprovals ? b : a));
  const approverRoles = ROLES.filter((r) => list.every((p) => p.approverRoles.includes(r)));
  const requiredApprovals = strictest.requiredApprovals;
  if (requiredApprovals > 0 && approverRoles.length === 0) {
    throw new AppError(
      'POLICY_DENIED',
      `policies ${list.map((p) => p.name).join(', ')} share no approver role`,
      {
        userMessage: 'the targets fall under policies with no approver role in common; split the request',
      },
    );
  }
  return {
    policyId: strictest.id,
    policyIds: list.map((p) => p.id),
    requiredApprovals,
    approverRoles,
    allowCustomCode: list.every((p) => p.allowCustomCode),
    approvalValidMinutes: Math.min(...list.map((p) => p.approvalValidMinutes)),
  };
}
