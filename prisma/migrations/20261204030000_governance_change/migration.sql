-- Second-admin confirmation (issue 11 item 4): a change that widens who may approve (a user made approver or
-- admin, a policy loosened for some target) is a row here. With another admin present it is 'pending' and not
-- applied until a different admin confirms it; with none (the demo) it is applied and stays 'unconfirmed', and
-- the requests it affects are flagged. The control plane signs each row when it is proposed and again when it
-- is confirmed (services/governance.ts, the vote-attestation key, held outside the database), so a database
-- writer cannot turn a pending change into a confirmed one that dispatch would believe.
CREATE TABLE "governance_change" (
    "id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "subjectType" TEXT NOT NULL,
    "subjectId" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "reasons" TEXT[],
    "state" TEXT NOT NULL,
    "requestedById" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "attestation" TEXT,
    "attestationKeyId" TEXT,
    "decidedById" TEXT,
    "decidedAt" TIMESTAMPTZ(3),
    "decisionComment" TEXT,
    "decisionAttestation" TEXT,

    CONSTRAINT "governance_change_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "governance_change_kind_check" CHECK ("kind" IN ('user.create', 'user.role', 'policy.create', 'policy.update', 'policy.delete')),
    CONSTRAINT "governance_change_state_check" CHECK ("state" IN ('pending', 'unconfirmed', 'confirmed', 'rejected'))
);
CREATE INDEX "governance_change_subject_idx" ON "governance_change"("subjectType", "subjectId", "createdAt");
CREATE INDEX "governance_change_state_idx" ON "governance_change"("state");
