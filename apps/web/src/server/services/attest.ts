/**
 * Vote attestations: at vote time the control plane signs what was decided (review id, request id, content hash,
 * reviewer, role, decision, time, requester) with a key held outside the database (a key file next to the
 * job-signing key, `PYREACH_ATTESTATION_KEY_FILE`). Just before it signs a job, dispatch counts only votes whose
 * attestation verifies, so a database writer can neither insert a vote nor flip a request's state into
 * something that gets a job signed: it would need the key file too.
 */
import { sign, verify } from 'node:crypto';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { SigningKeyPair } from './signing';

/** What an attestation binds. `at` is the vote's time (ISO, milliseconds), as stored in `review.createdAt`. */
export interface VoteFacts {
  reviewId: string;
  requestId: string;
  contentHash: string;
  reviewerId: string;
  role: string;
  decision: 'approve' | 'reject';
  at: string;
  requesterId: string;
}

/** The attestation key: an Ed25519 key pair (loaded like the job-signing key, never stored in the database). */
export type AttestationKey = Pick<SigningKeyPair, 'privateKey' | 'publicKey' | 'keyId'>;

const DOMAIN = 'pyreach-vote-attestation-v1\n';

function bytesOf(f: VoteFacts): Buffer {
  return Buffer.from(
    DOMAIN +
      canonicalJson({
        reviewId: f.reviewId,
        requestId: f.requestId,
        contentHash: f.contentHash,
        reviewerId: f.reviewerId,
        role: f.role,
        decision: f.decision,
        at: f.at,
        requesterId: f.requesterId,
      }),
    'utf8',
  );
}

/** Signs a vote: the columns to store with it. */
export function attestVote(
  key: AttestationKey,
  facts: VoteFacts,
): { attestation: string; attestationKeyId: string } {
  return {
    attestation: sign(null, bytesOf(facts), key.privateKey).toString('base64'),
    attestationKeyId: key.keyId,
  };
}

/** Whether a stored vote carries a valid attestation by this key over exactly these facts. */
export function verifyVote(
  key: Pick<AttestationKey, 'publicKey' | 'keyId'>,
  facts: VoteFacts,
  stored: { attestation: string | null; attestationKeyId: string | null },
): boolean {
  if (!stored.attestation || stored.attestationKeyId !== key.keyId) return false;
  try {
    return verify(null, bytesOf(facts), key.publicKey, Buffer.from(stored.attestation, 'base64'));
  } catch {
    return false;
  }
}
