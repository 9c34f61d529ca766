import { PolicyAction, PolicyInput, type GovernanceChangeRow, type PolicyRow } from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import type { Db, GovernanceChange, Policy, PrismaClient, Tx } from '@pyreach/db';
import type { AttestationKey } from './attest';
import { changeRowOf, policyLoosening, propose, type ProposedChange } from './governance';
import { ROLES, requireUser, type Actor, type Role } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation, parseInput } from './errors';
import { newId } from './ids';
import { getScript } from '@pyreach/scripts';
import { labelsOf, rolesOf } from './rows';
import { sealPolicies, trustedPolicies } from './policy-seal';

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

/** A policy write: the policy as it is now (null while a create waits) and the change a second admin must see. */
export interface PolicyWrite {
  policy: PolicyRow | null;
  change: GovernanceChangeRow | null;
}

type Rules = ReturnType<typeof parse>;
/** A stored policy's rules, as its input (what a governance change records as `before`). */
const rulesOf = (p: PolicyRow) => ({
  name: p.name,
  description: p.description,
  matchLabels: p.matchLabels,
  matchAction: p.matchAction,
  priority: p.priority,
  requiredApprovals: p.requiredApprovals,
  approverRoles: p.approverRoles,
  allowCustomCode: p.allowCustomCode,
  approvalValidMinutes: p.approvalValidMinutes,
});
const columns = (data: Rules) => ({ ...data, description: data.description ?? null });
const nameTaken = (name: string) =>
  new AppError('CONFLICT', `policy ${name} exists`, { userMessage: 'a policy with this name exists' });
const policyNotFound = (id: string) =>
  new AppError('NOT_FOUND', `policy ${id} not found`, { userMessage: 'policy not found' });

/**
 * The writes themselves, audited and sealed (policy-seal.ts: the seal covers the set as this write leaves it);
 * also what a confirmed governance change applies.
 */
export const policyAppliers = {
  async createPolicy(
    tx: Tx,
    actor: Actor,
    key: AttestationKey,
    id: string,
    rules: PolicyInput,
    changeId?: string,
  ) {
    const data = parse(rules);
    const p = await tx.policy.create({ data: { id, ...columns(data) } });
    await sealPolicies(tx, key, policyOf);
    await appendAudit(tx, {
      actor,
      action: 'policy.create',
      subjectType: 'policy',
      subjectId: p.id,
      data: { ...data, ...(changeId ? { changeId } : {}) },
    });
    return p;
  },
  async updatePolicy(
    tx: Tx,
    actor: Actor,
    key: AttestationKey,
    id: string,
    rules: PolicyInput,
    changeId?: string,
  ) {
    const data = parse(rules);
    const p = await tx.policy.update({ where: { id }, data: columns(data) });
    await sealPolicies(tx, key, policyOf);
    await appendAudit(tx, {
      actor,
      action: 'policy.update',
      subjectType: 'policy',
      subjectId: id,
      data: { ...data, ...(changeId ? { changeId } : {}) },
    });
    return p;
  },
  async deletePolicy(tx: Tx, actor: Actor, key: AttestationKey, id: string, changeId?: string) {
    const res = await tx.policy.deleteMany({ where: { id } });
    if (res.count !== 1) throw policyNotFound(id);
    await sealPolicies(tx, key, policyOf);
    await appendAudit(tx, {
      actor,
      action: 'policy.delete',
      subjectType: 'policy',
      subjectId: id,
      ...(changeId ? { data: { changeId } } : {}),
    });
  },
};

/**
 * Runs a policy write under second-admin confirmation: when `policyLoosening` finds a reason, the change is
 * proposed (pending: nothing written, the caller gets `policy: null` for a create or the policy unchanged;
 * unconfirmed: written, flagged). Tightening is written at once with no change row.
 */
async function governedWrite<T>(
  tx: Tx,
  actor: Actor,
  requestedById: string,
  change: Omit<ProposedChange, 'reasons' | 'subjectType'>,
  reasons: string[],
  key: AttestationKey,
  now: Date,
  write: (changeId?: string) => Promise<T>,
): Promise<{ written: T | null; change: GovernanceChange | null }> {
  if (reasons.length === 0) return { written: await write(), change: null };
  const c = await propose(tx, actor, requestedById, { ...change, subjectType: 'policy', reasons }, key, now);
  if (c.state === 'pending') return { written: null, change: c };
  return { written: await write(c.id), change: c };
}

/**
 * Creates a policy (admin only). Name conflicts are CONFLICT. One that is looser for some target than the
 * policy it would take over from waits for a second admin (see governance.ts).
 */
export async function createPolicy(
  db: PrismaClient,
  actor: Actor,
  input: PolicyInput,
  key: AttestationKey,
  now: Date = new Date(),
): Promise<PolicyWrite> {
  const user = requireUser(actor, 'policy:manage');
  const data = parse(input);
  try {
    return await db.$transaction(async (tx) => {
      if (await tx.policy.findUnique({ where: { name: data.name }, select: { id: true } }))
        throw nameTaken(data.name);
      const id = newId('pol');
      const others = (await tx.policy.findMany()).map(policyOf);
      const reasons = policyLoosening('policy.create', null, { ...data, id }, others);
      const r = await governedWrite(
        tx,
        actor,
        user.id,
        { kind: 'policy.create', subjectId: id, data: { after: data } },
        reasons,
        key,
        now,
        (changeId) => policyAppliers.createPolicy(tx, actor, key, id, data, changeId),
      );
      return {
        policy: r.written ? policyOf(r.written) : null,
        change: r.change ? changeRowOf(r.change) : null,
      };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw nameTaken(data.name);
    throw err;
  }
}

/**
 * Replaces a policy's rules (admin only). Requests already created keep the rules they were created under.
 * A loosening (see `policyLoosening`) waits for a second admin; the policy stays as it is meanwhile.
 */
export async function updatePolicy(
  db: PrismaClient,
  actor: Actor,
  id: string,
  input: PolicyInput,
  key: AttestationKey,
  now: Date = new Date(),
): Promise<PolicyWrite> {
  const user = requireUser(actor, 'policy:manage');
  const data = parse(input);
  return db.$transaction(async (tx) => {
    const row = await tx.policy.findUnique({ where: { id } });
    if (!row) throw policyNotFound(id);
    const before = policyOf(row);
    const others = (await tx.policy.findMany()).map(policyOf);
    const reasons = policyLoosening('policy.update', before, { ...data, id }, others);
    const r = await governedWrite(
      tx,
      actor,
      user.id,
      {
        kind: 'policy.update',
        subjectId: id,
        data: { before: rulesOf(before), after: data },
      },
      reasons,
      key,
      now,
      (changeId) => policyAppliers.updatePolicy(tx, actor, key, id, data, changeId),
    );
    return {
      policy: policyOf(r.written ?? row),
      change: r.change ? changeRowOf(r.change) : null,
    };
  });
}

/**
 * Deletes a policy (admin only); the `default` policy cannot be deleted (edit it instead). A deletion that
 * leaves some target to a looser policy waits for a second admin. Returns the id when deleted, null while it waits.
 */
export async function deletePolicy(
  db: PrismaClient,
  actor: Actor,
  id: string,
  key: AttestationKey,
  now: Date = new Date(),
): Promise<{ deleted: string | null; change: GovernanceChangeRow | null }> {
  const user = requireUser(actor, 'policy:manage');
  if (id === 'default')
    throw new AppError('INVALID_STATE', 'the default policy cannot be deleted', {
      userMessage: 'the default policy cannot be deleted; edit it instead',
    });
  return db.$transaction(async (tx) => {
    const row = await tx.policy.findUnique({ where: { id } });
    if (!row) throw policyNotFound(id);
    const before = policyOf(row);
    const others = (await tx.policy.findMany()).map(policyOf);
    const reasons = policyLoosening('policy.delete', before, null, others);
    const r = await governedWrite(
      tx,
      actor,
      user.id,
      { kind: 'policy.delete', subjectId: id, data: { before: rulesOf(before) } },
      reasons,
      key,
      now,
      async (changeId) => {
        await policyAppliers.deletePolicy(tx, actor, key, id, changeId);
        return id;
      },
    );
    return { deleted: r.written, change: r.change ? changeRowOf(r.change) : null };
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
 * Only policies the control plane sealed decide (POLICY_DENIED naming why otherwise).
 */
export async function resolvePolicy(
  db: Db,
  /** Verifies the policy seal (policy-seal.ts): without a valid one, POLICY_DENIED. */
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  labelsOfEveryTarget: Labels[],
  action?: RequestAction,
): Promise<EffectivePolicy> {
  const policies = await trustedPolicies(db, key, policyOf);
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
