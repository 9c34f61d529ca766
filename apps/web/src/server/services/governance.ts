/**
 * No one alone (issue 11 item 4): a change that widens who may approve — a user made approver or admin, a
 * policy loosened for some target — is a `governance_change`. With another enabled admin it is `pending` and
 * nothing changes until a DIFFERENT admin confirms it (recently signed in, like a vote); with no other admin
 * (the demo) it is applied at once but stays `unconfirmed`, and every request it affects carries
 * `unconfirmedGovernance`. Tightening takes effect at once and needs nobody; so does disabling a user.
 *
 * Each change is signed by the control plane when proposed and again when confirmed (the vote-attestation key,
 * outside the database). Dispatch counts a vote only when the reviewer's latest role change verifies (a
 * database writer flipping a pending row to `confirmed` gets no vote counted), and a change is confirmed or
 * rejected only when its proposal verifies (a writer editing a pending change's value gets it applied by nobody).
 * Namespace declarations are also signed where they are written (namespace-labels.ts), so the columns a
 * confirmed change writes are the ones policy trusts.
 */
import { sign, verify } from 'node:crypto';
import {
  GovernanceChangeRow,
  NamespaceLabels,
  PolicyInput,
  Targets,
  type GovernanceChangeKind,
  type PolicyAction,
  type PolicyRow,
} from '@pyreach/protocol/api';
import { canonicalJson } from '@pyreach/protocol/canonical';
import { Prisma, type Db, type GovernanceChange, type PrismaClient, type Tx } from '@pyreach/db';
import { requireUser, type Actor, type Role } from './actor';
import type { AttestationKey } from './attest';
import { appendAudit } from './audit';
import { outcome, type Effect, type Outcome } from './effects';
import { AppError, isUniqueViolation } from './errors';
import { newId } from './ids';

// ---- what counts as loosening -------------------------------------------------------------------------------

/** The rules of a policy that decide how hard it is to get a request through. */
export type PolicyRules = Pick<
  PolicyRow,
  'requiredApprovals' | 'approverRoles' | 'allowCustomCode' | 'approvalValidMinutes'
>;
/** What decides which targets and actions a policy covers, and whether it wins. */
export type PolicyScope = Pick<PolicyRow, 'matchLabels' | 'matchAction' | 'priority' | 'name'>;
export type PolicyShape = PolicyRules & PolicyScope & { id?: string };

/**
 * Whether `a` is at least as strict as `b` on every rule: as many approvals or more, approver roles a subset,
 * custom code allowed only if `b` allows it, an approval valid no longer.
 */
export function atLeastAsStrict(a: PolicyRules, b: PolicyRules): boolean {
  return (
    a.requiredApprovals >= b.requiredApprovals &&
    a.approverRoles.every((r) => b.approverRoles.includes(r)) &&
    (!a.allowCustomCode || b.allowCustomCode) &&
    a.approvalValidMinutes <= b.approvalValidMinutes
  );
}

/** Which rules of `after` are looser than `before` (empty: none). */
export function looserRules(before: PolicyRules, after: PolicyRules): string[] {
  const out: string[] = [];
  if (after.requiredApprovals < before.requiredApprovals)
    out.push(`fewer approvals (${before.requiredApprovals} → ${after.requiredApprovals})`);
  const added = after.approverRoles.filter((r) => !before.approverRoles.includes(r));
  if (added.length) out.push(`more approver roles (${added.join(', ')})`);
  if (after.allowCustomCode && !before.allowCustomCode) out.push('allows custom code');
  if (after.approvalValidMinutes > before.approvalValidMinutes)
    out.push(`approvals valid longer (${before.approvalValidMinutes} → ${after.approvalValidMinutes} min)`);
  return out;
}

/** Whether some host could match both label sets (they conflict only on a key with different values). */
export function labelsOverlap(a: Record<string, string>, b: Record<string, string>): boolean {
  return Object.entries(a).every(([k, v]) => !(k in b) || b[k] === v);
}

/** Whether some request could match both actions (a field both name with nothing in common excludes it). */
export function actionsOverlap(a: PolicyAction, b: PolicyAction): boolean {
  const disjoint = <T>(x?: readonly T[], y?: readonly T[]) => !!x && !!y && !x.some((v) => y.includes(v));
  return !(disjoint(a.kinds, b.kinds) || disjoint(a.scripts, b.scripts) || disjoint(a.risks, b.risks));
}

/** Whether `p` wins over `q` for a target both match (higher priority, then name). */
function outranks(p: PolicyScope, q: PolicyScope): boolean {
  return p.priority > q.priority || (p.priority === q.priority && p.name.localeCompare(q.name) < 0);
}

const overlaps = (p: PolicyScope, q: PolicyScope) =>
  labelsOverlap(p.matchLabels, q.matchLabels) && actionsOverlap(p.matchAction, q.matchAction);

/**
 * THE definition of "loosening" for policies: whether a change could let some target or action through with
 * less than it needed before. Returns the reasons (empty: it only tightens or changes nothing that matters).
 *
 * - create: the new policy takes over every target it overlaps with a policy it outranks; loosening when it is
 *   not at least as strict as each of those (or, where it is the first policy, always: it lets requests in).
 * - delete: the targets it held fall to the policies it outranked; loosening when one of those it overlaps is
 *   not at least as strict as it.
 * - update: with the same match and priority, loosening when a rule is looser; with a different match or
 *   priority, it is a delete of the old and a create of the new (a stricter policy lowered below a looser one,
 *   a narrowed strict policy, a widened loose one all loosen for some target).
 *
 * Overlap is judged from labels and actions alone (conservative: two policies that could both match a host
 * might; which hosts exist now does not matter, since hosts come and go).
 */
export function policyLoosening(
  kind: 'policy.create' | 'policy.update' | 'policy.delete',
  before: PolicyShape | null,
  after: PolicyShape | null,
  others: readonly PolicyShape[],
): string[] {
  const rest = others.filter((o) => !(before?.id && o.id === before.id));
  const takesOver = (p: PolicyShape): string[] => {
    const under = rest.filter((o) => overlaps(p, o) && outranks(p, o));
    if (rest.length === 0) return ['the first policy: it decides every request'];
    return under
      .filter((o) => !atLeastAsStrict(p, o))
      .map((o) => `looser than policy ${o.name} for targets it takes over (${looserRules(o, p).join('; ')})`);
  };
  const leaves = (p: PolicyShape): string[] =>
    rest
      .filter((o) => overlaps(p, o) && outranks(p, o) && !atLeastAsStrict(o, p))
      .map((o) => `its targets fall to looser policy ${o.name} (${looserRules(p, o).join('; ')})`);
  if (kind === 'policy.create') return after ? takesOver(after) : [];
  if (kind === 'policy.delete') return before ? leaves(before) : [];
  if (!before || !after) return [];
  const sameMatch =
    canonicalJson(before.matchLabels) === canonicalJson(after.matchLabels) &&
    canonicalJson(before.matchAction) === canonicalJson(after.matchAction);
  const rules = looserRules(before, after);
  if (!sameMatch) return [...new Set([...rules, ...leaves(before), ...takesOver(after)])];
  // Same targets, another rank: only the policies it now passes or now falls below change hands.
  const near = rest.filter((o) => overlaps(before, o));
  const gained = near
    .filter((o) => !outranks(before, o) && outranks(after, o) && !atLeastAsStrict(after, o))
    .map(
      (o) => `looser than policy ${o.name} for targets it takes over (${looserRules(o, after).join('; ')})`,
    );
  const lost = near
    .filter((o) => outranks(before, o) && !outranks(after, o) && !atLeastAsStrict(o, before))
    .map((o) => `its targets fall to looser policy ${o.name} (${looserRules(before, o).join('; ')})`);
  return [...rules, ...gained, ...lost];
}

/** Roles that may approve or manage who approves: giving one widens who may approve. */
export const APPROVING_ROLES: readonly Role[] = ['approver', 'admin'];

/**
 * Whether a role change widens who may approve: any change TO approver or admin (admin → approver too: a policy
 * naming only `approver` now accepts them). To viewer or operator it only narrows.
 */
export function roleWidens(from: Role | null, to: Role): boolean {
  return from !== to && APPROVING_ROLES.includes(to);
}

// ---- attestations -------------------------------------------------------------------------------------------

const PROPOSED = 'pyreach-governance-proposal-v1\n';
const DECIDED = 'pyreach-governance-decision-v1\n';

type ChangeFacts = Pick<
  GovernanceChange,
  'id' | 'kind' | 'subjectType' | 'subjectId' | 'requestedById' | 'createdAt'
> & { data: unknown };
const proposalBytes = (c: ChangeFacts) =>
  Buffer.from(
    PROPOSED +
      canonicalJson({
        id: c.id,
        kind: c.kind,
        subjectType: c.subjectType,
        subjectId: c.subjectId,
        data: c.data,
        requestedById: c.requestedById,
        at: c.createdAt.toISOString(),
      }),
    'utf8',
  );
const decisionBytes = (
  c: ChangeFacts,
  d: { state: string; decidedById: string | null; decidedAt: Date | null },
) =>
  Buffer.from(
    DECIDED +
      canonicalJson({
        proposal: proposalBytes(c).toString('base64'),
        state: d.state,
        decidedById: d.decidedById,
        at: d.decidedAt?.toISOString() ?? null,
      }),
    'utf8',
  );

const ok = (key: Pick<AttestationKey, 'publicKey'>, bytes: Buffer, sig: string | null) => {
  if (!sig) return false;
  try {
    return verify(null, bytes, key.publicKey, Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
};

/**
 * Whether a stored change is what the control plane signed: its proposal, and for `confirmed`/`rejected` the
 * decision by a different person. A row written behind the control plane's back fails.
 */
export function verifyChange(key: Pick<AttestationKey, 'publicKey' | 'keyId'>, c: GovernanceChange): boolean {
  if (c.attestationKeyId !== key.keyId || !ok(key, proposalBytes(c), c.attestation)) return false;
  if (c.state === 'pending' || c.state === 'unconfirmed') return true;
  if (!c.decidedById || c.decidedById === c.requestedById) return false;
  return ok(key, decisionBytes(c, c), c.decisionAttestation);
}

// ---- proposing ----------------------------------------------------------------------------------------------

export interface GovernanceDeps {
  /** The vote-attestation key: changes are signed with it. */
  attestation: AttestationKey;
}

/** Whether an enabled admin other than `userId` exists (then a widening change waits for them). */
async function anotherAdmin(tx: Tx, userId: string): Promise<boolean> {
  return (await tx.user.count({ where: { role: 'admin', banned: false, id: { not: userId } } })) > 0;
}

export type ProposedChange = {
  kind: GovernanceChangeKind;
  subjectType: 'user' | 'policy' | 'join_token' | 'agent';
  subjectId: string;
  data: Record<string, unknown>;
  reasons: string[];
};

/**
 * Records a widening change in `tx`: `pending` when another admin could confirm it (the caller must NOT apply
 * it), else `unconfirmed` (the caller applies it). Signed; audited `governance.propose`. Returns the row.
 */
export async function propose(
  tx: Tx,
  actor: Actor,
  requestedById: string,
  change: ProposedChange,
  key: AttestationKey,
  now: Date,
): Promise<GovernanceChange> {
  const state = (await anotherAdmin(tx, requestedById)) ? 'pending' : 'unconfirmed';
  const facts = {
    id: newId('gov'),
    kind: change.kind,
    subjectType: change.subjectType,
    subjectId: change.subjectId,
    // JSON round trip: what is signed is what reads back from the JSONB column.
    data: JSON.parse(JSON.stringify(change.data)) as Record<string, unknown>,
    requestedById,
    createdAt: new Date(now.getTime()),
  };
  const row = await tx.governanceChange.create({
    data: {
      ...facts,
      data: facts.data as object,
      reasons: change.reasons,
      state,
      attestation: sign(null, proposalBytes(facts), key.privateKey).toString('base64'),
      attestationKeyId: key.keyId,
    },
  });
  await appendAudit(
    tx,
    {
      actor,
      action: 'governance.propose',
      subjectType: change.subjectType,
      subjectId: change.subjectId,
      data: { changeId: row.id, kind: change.kind, state, reasons: change.reasons, change: facts.data },
    },
    now,
  );
  return row;
}

// ---- deciding -----------------------------------------------------------------------------------------------

/** What applying a confirmed change does, per kind (the user and policy services own the writes). */
export interface Appliers {
  /** Sets the user's role (a pending user.create or user.role), audited as `actor`. */
  setRole(tx: Tx, actor: Actor, userId: string, role: Role, changeId: string): Promise<void>;
  /** Policy writes: each seals the policy set with `key` (policy-seal.ts: policies decide only while sealed). */
  createPolicy(
    tx: Tx,
    actor: Actor,
    key: AttestationKey,
    id: string,
    rules: PolicyInput,
    changeId: string,
  ): Promise<void>;
  updatePolicy(
    tx: Tx,
    actor: Actor,
    key: AttestationKey,
    id: string,
    rules: PolicyInput,
    changeId: string,
  ): Promise<void>;
  deletePolicy(tx: Tx, actor: Actor, key: AttestationKey, id: string, changeId: string): Promise<void>;
  /**
   * A namespace declaration on a join token or an agent (null: the agent follows its token again), signed with
   * `key` (the attestation key: policy reads only signed declarations).
   */
  setNamespaceLabels(
    tx: Tx,
    actor: Actor,
    key: AttestationKey,
    subjectType: 'join_token' | 'agent',
    subjectId: string,
    value: NamespaceLabels | null,
    changeId: string,
  ): Promise<void>;
}

const notFound = (id: string) =>
  new AppError('NOT_FOUND', `governance change ${id} not found`, { userMessage: 'change not found' });

/**
 * Confirms or rejects a change (admin, a person, signed in within the re-authentication window, never the
 * one who proposed it nor its subject, and not an admin whose own admin role is still unconfirmed or pending —
 * else one admin could mint a second to confirm for them). Confirming a pending change applies it; confirming an
 * unconfirmed one (already applied, where there was no second admin) records the second person. A rejection
 * applies to a pending change only (an applied one is undone by a new change). Signed and audited.
 */
export async function decideChange(
  db: PrismaClient,
  actor: Actor,
  id: string,
  input: { decision: 'confirm' | 'reject'; comment?: string },
  auth: { authenticatedAt: Date; reauthWindowMinutes?: number; now: Date; attestation: AttestationKey },
  apply: Appliers,
): Promise<Outcome<{ change: GovernanceChangeRow }>> {
  if (actor.type !== 'user')
    throw new AppError('PERSON_REQUIRED', `${actor.type} may not confirm governance changes`, {
      userMessage: 'a governance change is confirmed by a person signed in recently, never a token',
    });
  const user = requireUser(actor, 'user:manage');
  const now = auth.now;
  if (now.getTime() - auth.authenticatedAt.getTime() > (auth.reauthWindowMinutes ?? 5) * 60_000)
    throw new AppError('STALE_AUTH', `sign-in of ${user.id} is older than the re-authentication window`, {
      userMessage: 'sign in again to confirm or reject governance changes',
    });
  try {
    return await db.$transaction(async (tx) => {
      await tx.$queryRawUnsafe('SELECT id FROM "governance_change" WHERE id = $1 FOR UPDATE', id);
      const c = await tx.governanceChange.findUnique({ where: { id } });
      if (!c) throw notFound(id);
      // What a second admin confirms is what the control plane signed when it was proposed: a row whose value,
      // kind, subject or state was edited behind its back is never applied (nor signed as decided).
      if (!verifyChange(auth.attestation, c))
        throw new AppError('INVALID_STATE', `change ${id} does not verify against the attestation key`, {
          userMessage:
            'this change is not what the control plane recorded (edited outside it): propose it again',
        });
      if (c.requestedById === user.id)
        throw new AppError('SELF_APPROVAL', `user ${user.id} tried to decide own change ${id}`, {
          userMessage: 'a second admin must confirm this change: you proposed it',
        });
      if (c.subjectType === 'user' && c.subjectId === user.id)
        throw new AppError('SELF_APPROVAL', `user ${user.id} tried to decide a change to themself`, {
          userMessage: 'a change to your own role is confirmed by another admin',
        });
      if (!(await roleIsConfirmed(tx, user.id)))
        throw new AppError('FORBIDDEN', `admin ${user.id} holds an unconfirmed admin role`, {
          userMessage:
            'your own admin role is not confirmed by a second admin yet, so you cannot confirm changes',
        });
      const allowed = input.decision === 'confirm' ? ['pending', 'unconfirmed'] : ['pending'];
      if (!allowed.includes(c.state))
        throw new AppError('INVALID_STATE', `change ${id} is ${c.state}`, {
          userMessage:
            c.state === 'unconfirmed'
              ? 'this change is already in effect; undo it with a new change'
              : `a ${c.state} change cannot be ${input.decision === 'confirm' ? 'confirmed' : 'rejected'}`,
        });
      const effects: Effect[] = [];
      if (input.decision === 'confirm' && c.state === 'pending') {
        await applyChange(tx, actor, c, apply, auth.attestation);
        if (c.subjectType === 'user')
          effects.push({ kind: 'sessions-closed', userId: c.subjectId, reason: 'role changed' });
      }
      const state = input.decision === 'confirm' ? 'confirmed' : 'rejected';
      const decidedAt = new Date(now.getTime());
      const updated = await tx.governanceChange.update({
        where: { id },
        data: {
          state,
          decidedById: user.id,
          decidedAt,
          decisionComment: input.comment ?? null,
          decisionAttestation: sign(
            null,
            decisionBytes(c, { state, decidedById: user.id, decidedAt }),
            auth.attestation.privateKey,
          ).toString('base64'),
        },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: `governance.${state === 'confirmed' ? 'confirm' : 'reject'}`,
          subjectType: c.subjectType,
          subjectId: c.subjectId,
          data: {
            changeId: id,
            kind: c.kind,
            from: c.state,
            requestedById: c.requestedById,
            comment: input.comment ?? null,
          },
        },
        now,
      );
      return outcome({ change: changeRowOf(updated) }, effects);
    });
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('CONFLICT', `change ${id} conflicts with the current policies`, {
        userMessage: 'a policy with this name exists now; reject this change and propose it again',
      });
    throw err;
  }
}

async function applyChange(
  tx: Tx,
  actor: Actor,
  c: GovernanceChange,
  apply: Appliers,
  key: AttestationKey,
): Promise<void> {
  const data = c.data as { role?: Role; after?: PolicyInput | NamespaceLabels | null };
  switch (c.kind) {
    case 'user.create':
    case 'user.role': {
      const u = await tx.user.findUnique({ where: { id: c.subjectId }, select: { id: true } });
      if (!u)
        throw new AppError('NOT_FOUND', `user ${c.subjectId} is gone`, { userMessage: 'the user is gone' });
      await apply.setRole(tx, actor, c.subjectId, data.role!, c.id);
      return;
    }
    case 'policy.create':
      return apply.createPolicy(tx, actor, key, c.subjectId, PolicyInput.parse(data.after), c.id);
    case 'policy.update': {
      if (!(await tx.policy.findUnique({ where: { id: c.subjectId }, select: { id: true } })))
        throw new AppError('NOT_FOUND', `policy ${c.subjectId} is gone`, {
          userMessage: 'the policy is gone',
        });
      return apply.updatePolicy(tx, actor, key, c.subjectId, PolicyInput.parse(data.after), c.id);
    }
    case 'policy.delete':
      return apply.deletePolicy(tx, actor, key, c.subjectId, c.id);
    case 'namespace_labels.set': {
      const subjectType = c.subjectType === 'join_token' ? 'join_token' : 'agent';
      const exists =
        subjectType === 'join_token'
          ? await tx.joinToken.findUnique({ where: { id: c.subjectId }, select: { id: true } })
          : await tx.agent.findUnique({ where: { id: c.subjectId }, select: { id: true } });
      if (!exists)
        throw new AppError('NOT_FOUND', `${subjectType} ${c.subjectId} is gone`, {
          userMessage: `the ${subjectType === 'agent' ? 'agent' : 'join token'} is gone`,
        });
      const after = data.after === null ? null : NamespaceLabels.parse(data.after);
      return apply.setNamespaceLabels(tx, actor, key, subjectType, c.subjectId, after, c.id);
    }
    default:
      throw new AppError('INTERNAL', `unknown governance change kind ${c.kind}`, {
        userMessage: 'internal error',
      });
  }
}

// ---- reading ------------------------------------------------------------------------------------------------

export function changeRowOf(c: GovernanceChange): GovernanceChangeRow {
  return GovernanceChangeRow.parse({
    ...c,
    createdAt: c.createdAt.toISOString(),
    decidedAt: c.decidedAt?.toISOString() ?? null,
  });
}

/** Changes newest first; `open` = pending or unconfirmed (what a second admin has to look at). */
export async function listChanges(db: Db, filter: { open?: boolean } = {}): Promise<GovernanceChangeRow[]> {
  const rows = await db.governanceChange.findMany({
    where: filter.open ? { state: { in: ['pending', 'unconfirmed'] } } : {},
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: 200,
  });
  return rows.map(changeRowOf);
}

const ROLE_KINDS = ['user.create', 'user.role'];

/** The latest role change of each of these users (none: a role that predates confirmation, or seeded). */
async function latestRoleChanges(db: Db, userIds: string[]): Promise<Map<string, GovernanceChange>> {
  if (userIds.length === 0) return new Map();
  const rows = await db.governanceChange.findMany({
    where: { subjectType: 'user', subjectId: { in: [...new Set(userIds)] }, kind: { in: ROLE_KINDS } },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  });
  return new Map(rows.map((r) => [r.subjectId, r]));
}

/** Whether a user's role is not waiting on (or lacking) a second admin. */
async function roleIsConfirmed(db: Db, userId: string): Promise<boolean> {
  const c = (await latestRoleChanges(db, [userId])).get(userId);
  return !c || c.state === 'confirmed' || c.state === 'rejected';
}

/**
 * For dispatch: which of these reviewers' votes count as far as governance goes. A reviewer whose latest role
 * change is pending or rejected (their role is not one a second admin agreed to), or whose change does not
 * verify (written behind the control plane's back), does not count; `unconfirmed` (no second admin existed)
 * counts, and the request is flagged.
 */
export async function reviewersBacked(
  db: Db,
  key: Pick<AttestationKey, 'publicKey' | 'keyId'>,
  reviewerIds: string[],
): Promise<{ refused: Map<string, string>; unconfirmed: Set<string> }> {
  const latest = await latestRoleChanges(db, reviewerIds);
  const refused = new Map<string, string>();
  const unconfirmed = new Set<string>();
  for (const [userId, c] of latest) {
    if (!verifyChange(key, c)) refused.set(userId, 'role change without a valid control-plane signature');
    else if (c.state === 'pending') refused.set(userId, 'role waits for a second admin');
    else if (c.state === 'rejected') refused.set(userId, 'role change rejected by a second admin');
    else if (c.state === 'unconfirmed') unconfirmed.add(userId);
  }
  return { refused, unconfirmed };
}

/**
 * Which of these requests rest on a change no second admin confirmed: filed under a policy whose latest change
 * is `unconfirmed`, or approved (on the current hash) by someone whose role is. One query each, for a page.
 */
export async function unconfirmedGovernanceOf(
  db: Db,
  reqs: { id: string; policyId: string | null; contentHash: string; targets?: unknown }[],
): Promise<Set<string>> {
  if (reqs.length === 0) return new Set();
  const open = await db.governanceChange.findMany({
    where: { state: 'unconfirmed' },
    select: { subjectType: true, subjectId: true, kind: true },
  });
  if (open.length === 0) return new Set();
  const policies = new Set(open.filter((c) => c.subjectType === 'policy').map((c) => c.subjectId));
  const users = open.filter((c) => c.subjectType === 'user').map((c) => c.subjectId);
  const flagged = new Set(reqs.filter((r) => r.policyId && policies.has(r.policyId)).map((r) => r.id));
  for (const id of await onUnconfirmedNamespaces(db, reqs, open)) flagged.add(id);
  if (users.length) {
    // Only users whose LATEST role change is the unconfirmed one.
    const latest = await latestRoleChanges(db, users);
    const still = [...latest.values()].filter((c) => c.state === 'unconfirmed').map((c) => c.subjectId);
    if (still.length) {
      const votes = await db.review.findMany({
        where: {
          requestId: { in: reqs.map((r) => r.id) },
          reviewerId: { in: still },
          decision: 'approve',
        },
        select: { requestId: true, contentHash: true },
      });
      const hash = new Map(reqs.map((r) => [r.id, r.contentHash]));
      for (const v of votes) if (hash.get(v.requestId) === v.contentHash) flagged.add(v.requestId);
    }
  }
  return flagged;
}

/**
 * Requests resting on a namespace declaration no second admin confirmed (the latest declaration change of an
 * agent, or of the join token it enrolled with, is `unconfirmed`): explicit targets on such an agent, a selector
 * whose host labels such an agent carries, or an execution planned on one.
 */
async function onUnconfirmedNamespaces(
  db: Db,
  reqs: { id: string; targets?: unknown }[],
  open: { subjectType: string; subjectId: string; kind: string }[],
): Promise<string[]> {
  const subjects = open.filter((c) => c.kind === 'namespace_labels.set').map((c) => c.subjectId);
  if (subjects.length === 0) return [];
  const changes = await db.governanceChange.findMany({
    where: { kind: 'namespace_labels.set', subjectId: { in: [...new Set(subjects)] } },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    select: { subjectType: true, subjectId: true, state: true },
  });
  const latest = new Map(changes.map((c) => [c.subjectId, c]));
  const still = [...latest.values()].filter((c) => c.state === 'unconfirmed');
  if (still.length === 0) return [];
  const agents = await db.agent.findMany({
    where: {
      OR: [
        { id: { in: still.filter((c) => c.subjectType === 'agent').map((c) => c.subjectId) } },
        {
          joinTokenId: { in: still.filter((c) => c.subjectType === 'join_token').map((c) => c.subjectId) },
          namespaceLabels: { equals: Prisma.DbNull },
        },
      ],
    },
    select: { id: true, labels: true },
  });
  if (agents.length === 0) return [];
  const ids = new Set(agents.map((a) => a.id));
  const hosts = agents.map((a) => a.labels as Record<string, string>);
  const out = new Set<string>();
  for (const r of reqs) {
    const t = Targets.safeParse(r.targets);
    if (!t.success) continue;
    const targets = t.data;
    const hit =
      targets.type === 'processes'
        ? targets.processes.some((p) => ids.has(p.agentId))
        : hosts.some((h) => Object.entries(targets.labels).every(([k, v]) => h[k] === v));
    if (hit) out.add(r.id);
  }
  const planned = await db.execution.findMany({
    where: { requestId: { in: reqs.map((r) => r.id) }, agentId: { in: [...ids] } },
    select: { requestId: true },
    distinct: ['requestId'],
  });
  for (const e of planned) out.add(e.requestId);
  return [...out];
}
