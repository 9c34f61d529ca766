import { z } from 'zod';
import { Labels } from '@pyreach/protocol/common';
import type { Db, Policy, PrismaClient } from '@pyreach/db';
import { ROLES, requireUser, type Actor, type Role } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation } from './errors';
import { newId } from './ids';

export const PolicyInput = z.object({
  name: z.string().min(1).max(100),
  description: z.string().max(1000).nullable().optional(),
  matchLabels: Labels.default({}),
  priority: z.number().int().min(-100_000).max(100_000).default(0),
  requiredApprovals: z.number().int().min(0).max(10).default(1),
  approverRoles: z.array(z.enum(ROLES)).max(4).default(['approver', 'admin']),
  allowCustomCode: z.boolean().default(false),
  approvalValidMinutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(60),
});
export type PolicyInput = z.input<typeof PolicyInput>;

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

function parse(input: unknown) {
  const r = PolicyInput.safeParse(input);
  if (!r.success)
    throw new AppError('VALIDATION', `invalid policy: ${z.prettifyError(r.error)}`, {
      details: r.error.issues,
    });
  if (r.data.requiredApprovals > 0 && r.data.approverRoles.length === 0) {
    throw new AppError('VALIDATION', 'a policy that needs approvals must name at least one approver role');
  }
  return r.data;
}

/** Creates a policy (admin only). Name conflicts are CONFLICT. */
export async function createPolicy(db: PrismaClient, actor: Actor, input: PolicyInput): Promise<Policy> {
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
      return p;
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
): Promise<Policy> {
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
    return p;
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
export async function listPolicies(db: Db): Promise<Policy[]> {
  return db.policy.findMany({ orderBy: [{ priority: 'desc' }, { name: 'asc' }] });
}

/** The policy that applies to one host: highest priority whose matchLabels all match (name breaks ties). */
export function policyForHost(policies: Policy[], labels: Labels): Policy | undefined {
  return policies
    .filter((p) => Object.entries(p.matchLabels as Labels).every(([k, v]) => labels[k] === v))
    .sort((a, b) => b.priority - a.priority || a.name.localeCompare(b.name))[0];
}

/**
 * Resolves the effective policy for a request whose targets run on hosts with these labels (one entry per
 * target host). Per host, the highest-priority matching policy; across hosts, the strictest combination:
 * most approvals, intersection of approver roles, custom code only if every policy allows it, shortest
 * validity. POLICY_DENIED when a host matches no policy, or when the intersection leaves no one who may
 * approve a request that needs approvals. With no targets at all, the policy for a host without labels.
 */
export async function resolvePolicy(db: Db, labelsOfEveryTarget: Labels[]): Promise<EffectivePolicy> {
  const policies = await db.policy.findMany();
  const targets = labelsOfEveryTarget.length > 0 ? labelsOfEveryTarget : [{}];
  const applied = new Map<string, Policy>();
  for (const labels of targets) {
    const p = policyForHost(policies, labels);
    if (!p)
      throw new AppError('POLICY_DENIED', `no policy matches host labels ${JSON.stringify(labels)}`, {
        userMessage: 'no policy covers one of the targets',
      });
    applied.set(p.id, p);
  }
  const list = [...applied.values()];
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
