-- Break-glass (issue 11 item 4): an admin grants a person the right to file an emergency request that runs
-- without votes. The grant row is signed by the control plane (vote-attestation key, outside the database), and
-- so is each emergency request at filing (request id, content hash, requester, grant id, time): dispatch checks
-- both and that the grant is still valid, so a database writer inserting a grant or setting the flag gets no
-- signed job. Every emergency request needs a review afterwards by a second person ("afterReview").
CREATE TABLE "break_glass_grant" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "grantedById" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMPTZ(3),
    "revokedAt" TIMESTAMPTZ(3),
    "revokedById" TEXT,
    "attestation" TEXT,
    "attestationKeyId" TEXT,

    CONSTRAINT "break_glass_grant_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "break_glass_grant_userId_idx" ON "break_glass_grant"("userId");

ALTER TABLE "injection_request"
    ADD COLUMN "emergency" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "emergencyReason" TEXT,
    ADD COLUMN "breakGlassGrantId" TEXT,
    ADD COLUMN "breakGlassAt" TIMESTAMPTZ(3),
    ADD COLUMN "breakGlassAttestation" TEXT,
    ADD COLUMN "breakGlassKeyId" TEXT,
    ADD COLUMN "afterReview" TEXT,
    ADD COLUMN "afterReviewById" TEXT,
    ADD COLUMN "afterReviewAt" TIMESTAMPTZ(3),
    ADD COLUMN "afterReviewComment" TEXT,
    ADD CONSTRAINT "injection_request_afterReview_check" CHECK ("afterReview" IS NULL OR "afterReview" IN ('open', 'closed'));
CREATE INDEX "injection_request_afterReview_idx" ON "injection_request"("afterReview");
