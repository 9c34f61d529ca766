/**
 * The policy seal: the control plane signs the whole policy set at every policy write, and the policies decide a
 * request (filing, preview, dispatch) only while that seal verifies. Per-row signatures would not do: a database
 * writer who *deletes* a strict high-priority policy, or *inserts* a looser one, leaves every remaining row
 * validly signed. A digest over every row's id and rules, signed with the vote-attestation key (outside the
 * database), catches an edit, an insertion and a deletion alike.
 *
 * No seal row: an install whose policies were never written through the control plane is trusted only while its
 * policies are exactly the migration's default policy and the audit trail holds no policy write — so deleting
 * the seal row gets a writer nothing on an install that ever had its policies changed. Anything else unsealed (an
 * upgrade from before sealing) is refused until an admin runs `npm run -w apps/web seal-policies`.
 *
 * Residual (docs/security.md): a writer who puts back an earlier policy set together with its seal row (a
 * rollback to rules that were once in force); the audit trail's `policy.*` events show it.
 */
import { createHash, sign, verify } from 'node:crypto';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { Db, Policy, PrismaClient, Tx } from '@pyreach/db';
import type { PolicyRow } from '@pyreach/protocol/api';
import type { Actor } from './actor';
import type { AttestationKey } from './attest';
import { appendAudit } from './audit';
import { AppError } from './errors';

const DOMAIN = 'pyreach-policy-seal-v1\n';
/** Serialises policy writes' seals (any constant unique among the project's advisory locks). */
const SEAL_LOCK_KEY = 7_264_611_002;
/** The audit actions a policy write through the control plane leaves (the seal command's own included). */
export const POLICY_WRITE_ACTIONS = ['policy.create', 'policy.update', 'policy.delete', 'policy.seal'];

/** What of a policy the seal covers: its id and every rule (not its timestamps). */
function sealed(p: PolicyRow) {
  return {
    id: p.id,
    name: p.name,
    description: p.description ?? null,
    matchLabels: p.matchLabels,
    matchAction: p.matchAction,
    priority: p.priority,
    requiredApprovals: p.requiredApprovals,
    approverRoles: p.approverRoles,
    allowCustomCode: p.allowCustomCode,
    approvalValidMinutes: p.approvalValidMinutes,
  };
}

/** sha256 (hex) of the canonical JSON of every policy's id and rules, ordered by id. */
export function policySetDigest(policies: PolicyRow[]): string {
  const rows = [...policies].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map(sealed);
  return createHash('sha256').update(canonicalJson(rows)).digest('hex');
}

/**
 * The policy set a fresh install has: migration 20261123000500_default_policy's one row, with the columns later
 * migrations added at their defaults (a test compares it with a freshly migrated database).
 */
export const FACTORY_POLICIES: PolicyRow[] = [
  {
    id: 'default',
    name: 'default',
    description: 'Applies to every host no other policy matches: one approval by an approver or admin.',
    matchLabels: {},
    matchAction: {},
    priority: -1000,
    requiredApprovals: 1,
    approverRoles: ['approver', 'admin'],
    allowCustomCode: true,
    approvalValidMinutes: 60,
  },
];
const FACTORY_DIGEST = policySetDigest(FACTORY_POLICIES);

interface SealFacts {
  version: bigint;
  digest: string;
  sealedAt: Date;
}

const sealBytes = (f: SealFacts) =>
  Buffer.from(
    DOMAIN +
      canonicalJson({ version: f.version.toString(), digest: f.digest, sealedAt: f.sealedAt.toISOString() }),
    'utf8',
  );

/**
 * Seals the policy set as it is inside `tx` (call after the write, in its transaction): one seal at a time, so
 * two admins' concurrent writes each seal what the other committed. Returns the new seal's version.
 */
export async function sealPolicies(
  tx: Tx,
  key: AttestationKey,
  parse: (p: Policy) => PolicyRow,
  now: Date = new Date(),
): Promise<bigint> {
  await tx.$queryRawUnsafe('SELECT pg_advisory_xact_lock($1::bigint) IS NULL AS locked', SEAL_LOCK_KEY);
  const digest = policySetDigest((await tx.policy.findMany()).map(parse));
  const prev = await tx.policySeal.findUnique({ where: { id: 1 }, select: { version: true } });
  const facts: SealFacts = { version: (prev?.version ?? 0n) + 1n, digest, sealedAt: now };
  const columns = {
    version: facts.version,
    digest,
    keyId: key.keyId,
    signature: sign(null, sealBytes(facts), key.privateKey).toString('base64'),
    sealedAt: now,
  };
  await tx.policySeal.upsert({ where: { id: 1 }, create: { id: 1, ...columns }, update: columns });
  return facts.version;
}

/** Why the stored policies may not be used, or null when they may. */
async function untrusted(
  db: Db,
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  policies: PolicyRow[],
): Promise<string | null> {
  const seal = await db.policySeal.findUnique({ where: { id: 1 } });
  const digest = policySetDigest(policies);
  if (!seal) {
    if (digest !== FACTORY_DIGEST)
      return 'the policies carry no control-plane seal (changed in the database, or not sealed since an upgrade)';
    const written = await db.auditEvent.findFirst({
      where: { action: { in: POLICY_WRITE_ACTIONS } },
      select: { seq: true },
    });
    return written
      ? 'the policy seal is missing although policies were written through the control plane'
      : null;
  }
  if (!key) return 'the policy seal cannot be checked here (no attestation key)';
  let valid = false;
  try {
    valid = verify(null, sealBytes(seal), key.publicKey, Buffer.from(seal.signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return 'the policy seal does not verify (not signed by this control plane)';
  if (seal.digest !== digest)
    return 'the policies differ from what the control plane last sealed (a policy was edited, added or removed in the database)';
  return null;
}

/**
 * The policies, if the control plane's seal covers exactly them; otherwise POLICY_DENIED saying why (nothing is
 * decided by rules the control plane did not write). A policy write committing between the reads is retried.
 */
export async function trustedPolicies<P extends PolicyRow>(
  db: Db,
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  parse: (p: Policy) => P,
): Promise<P[]> {
  let why: string | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const policies = (await db.policy.findMany()).map(parse);
    why = await untrusted(db, key, policies);
    if (!why) return policies;
  }
  throw new AppError('POLICY_DENIED', `untrusted policy set: ${why}`, {
    userMessage: `refused: ${why}. Nothing was decided by these policies; an admin should compare them with the audit trail's policy events and, if they are right, run "npm run -w apps/web seal-policies"`,
  });
}

/**
 * The upgrade step (`npm run -w apps/web seal-policies`): seals the policy set exactly as it is now, audited
 * `policy.seal` with the digest and the ids it covers. Whoever runs it vouches for those policies: for an upgrade
 * from before sealing, or after an admin checked an untrusted set against the audit trail's policy events.
 */
export async function sealPolicySet(
  db: PrismaClient,
  actor: Actor,
  key: AttestationKey,
  parse: (p: Policy) => PolicyRow,
  now: Date = new Date(),
): Promise<{ version: string; digest: string; policies: string[] }> {
  return db.$transaction(async (tx) => {
    const version = await sealPolicies(tx, key, parse, now);
    const policies = (await tx.policy.findMany({ select: { id: true }, orderBy: { id: 'asc' } })).map(
      (p) => p.id,
    );
    const { digest } = await tx.policySeal.findUniqueOrThrow({ where: { id: 1 }, select: { digest: true } });
    const sealed = { version: version.toString(), digest, policies };
    await appendAudit(tx, { actor, action: 'policy.seal', subjectType: 'policy', data: sealed }, now);
    return sealed;
  });
}
