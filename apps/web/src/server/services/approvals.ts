/**
 * What dispatch checks just before it signs a job, from nothing a database writer alone can forge: the content
 * hash recomputed from the row, the policy resolved again for the target's host (the strictest of that and the
 * request's own), and the votes counted only where the control plane's attestation verifies — distinct people,
 * none the requester, each in a role the policy accepts, still within the approval validity, on this hash.
 */
import type { InjectionRequest, Review, Tx } from '@pyreach/db';
import type { Labels } from '@pyreach/protocol/common';
import { ROLES, type Role } from './actor';
import { verifyVote, type AttestationKey } from './attest';
import { contentHashOfRow } from './content';
import { AppError } from './errors';
import { reviewersBacked } from './governance';
import { resolvePolicy, type EffectivePolicy } from './policy';
import { rolesOf } from './rows';

/** The policy one execution runs under: the request's (from filing or its last edit) and its host's now. */
export type DispatchPolicy =
  | {
      ok: true;
      policy: Pick<EffectivePolicy, 'requiredApprovals' | 'approverRoles' | 'approvalValidMinutes'> & {
        policyIds: string[];
      };
    }
  | { ok: false; code: 'POLICY_DENIED'; message: string };

/**
 * Resolves the policy for the host an execution goes to, at dispatch, and combines it with the one the request
 * was filed under: most approvals, common approver roles, shortest validity. Custom code where the host's policy
 * forbids it, a host no policy covers, or policies without a valid seal, is POLICY_DENIED (never run under the weaker
 * policy).
 */
export async function policyAtDispatch(
  tx: Tx,
  req: Pick<
    InjectionRequest,
    'kind' | 'scriptId' | 'requiredApprovals' | 'approverRoles' | 'approvalValidMinutes'
  >,
  labels: Labels,
  /** Verifies the policy seal: policies the control plane did not seal refuse (POLICY_DENIED). */
  key: Pick<AttestationKey, 'publicKey'>,
): Promise<DispatchPolicy> {
  let host: EffectivePolicy;
  try {
    host = await resolvePolicy(tx, key, [labels], { kind: req.kind, scriptId: req.scriptId });
  } catch (err) {
    if (err instanceof AppError && err.code === 'POLICY_DENIED')
      return { ok: false, code: 'POLICY_DENIED', message: err.userMessage };
    throw err;
  }
  if (req.kind === 'custom' && !host.allowCustomCode)
    return {
      ok: false,
      code: 'POLICY_DENIED',
      message: `the policy for this host (${host.policyIds.join(', ')}) allows library scripts only`,
    };
  const filed = rolesOf(req.approverRoles);
  const approverRoles = ROLES.filter((r) => filed.includes(r) && host.approverRoles.includes(r));
  const requiredApprovals = Math.max(req.requiredApprovals, host.requiredApprovals);
  if (requiredApprovals > 0 && approverRoles.length === 0)
    return {
      ok: false,
      code: 'POLICY_DENIED',
      message: 'the policy for this host and the request’s share no approver role',
    };
  return {
    ok: true,
    policy: {
      requiredApprovals,
      approverRoles,
      approvalValidMinutes: Math.min(req.approvalValidMinutes, host.approvalValidMinutes),
      policyIds: host.policyIds,
    },
  };
}

/** The outcome of counting a request's attested votes against what a policy needs. */
export interface ApprovalCount {
  /** Enough valid approvals and no valid rejection. */
  ok: boolean;
  /** Ids of the attested approvals that counted (what a v2 envelope carries), oldest first. */
  attestationIds: string[];
  needed: number;
  /** Vote rows on this hash whose attestation does not verify (written behind the control plane's back). */
  forged: number;
  /** Why not, for the audit record and the API (null when ok). */
  reason: string | null;
}

/**
 * Counts the attested votes on the request's current content hash, after checking that hash against the row's
 * content. Only approvals that verify, by distinct people other than the requester, in an eligible role, cast
 * less than `approvalValidMinutes` ago, count.
 */
export async function countApprovals(
  tx: Tx,
  req: InjectionRequest,
  policy: { requiredApprovals: number; approverRoles: readonly Role[]; approvalValidMinutes: number },
  key: Pick<AttestationKey, 'publicKey' | 'keyId'>,
  now: Date,
): Promise<ApprovalCount> {
  const needed = policy.requiredApprovals;
  const recomputed = contentHashOfRow(req);
  if (recomputed !== req.contentHash)
    return {
      ok: false,
      attestationIds: [],
      needed,
      forged: 0,
      reason: 'the request’s content does not match the hash its votes were cast on',
    };
  const votes: Review[] = await tx.review.findMany({
    where: { requestId: req.id, contentHash: req.contentHash },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  });
  const attested = votes.filter((v) =>
    verifyVote(
      key,
      {
        reviewId: v.id,
        requestId: req.id,
        contentHash: req.contentHash,
        reviewerId: v.reviewerId,
        role: v.role ?? '',
        decision: v.decision === 'reject' ? 'reject' : 'approve',
        at: v.createdAt.toISOString(),
        requesterId: req.requesterId,
      },
      v,
    ),
  );
  // A vote counts only where the reviewer's role is one no second admin is still asked to confirm, and whose
  // governance record the control plane signed (a writer flipping a pending promotion to confirmed fails here).
  const backing = await reviewersBacked(
    tx,
    key,
    attested.map((v) => v.reviewerId),
  );
  const forged = votes.length - attested.length;
  if (attested.some((v) => v.decision === 'reject'))
    return { ok: false, attestationIds: [], needed, forged, reason: 'a reviewer rejected this content' };
  const validFrom = now.getTime() - policy.approvalValidMinutes * 60_000;
  const seen = new Set<string>();
  const counted: string[] = [];
  const unbacked: string[] = [];
  for (const v of attested) {
    if (v.decision !== 'approve' || v.reviewerId === req.requesterId || seen.has(v.reviewerId)) continue;
    if (!policy.approverRoles.some((r) => r === v.role)) continue;
    if (backing.refused.has(v.reviewerId)) {
      unbacked.push(`${v.reviewerId}: ${backing.refused.get(v.reviewerId)}`);
      continue;
    }
    if (v.createdAt.getTime() <= validFrom) continue;
    seen.add(v.reviewerId);
    counted.push(v.id);
  }
  const ok = counted.length >= needed;
  return {
    ok,
    attestationIds: counted,
    needed,
    forged,
    reason: ok
      ? null
      : `needs ${needed} valid approval(s) from ${policy.approverRoles.join(' or ')}; ${counted.length} counted` +
        (forged ? ` (${forged} vote row(s) without a valid attestation ignored)` : '') +
        (unbacked.length ? ` (not counted, role not confirmed: ${unbacked.join('; ')})` : ''),
  };
}
