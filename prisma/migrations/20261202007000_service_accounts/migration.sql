-- Service accounts and their API tokens (issue 13): automation identities with a role that act through bearer
-- tokens. A token is `pyr_<id>_<secret>`; only the SHA-256 of the whole token is stored, and it is looked up by
-- id and compared in constant time. The owner is the person who counts as requester for four-eyes.

CREATE TABLE "service_account" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "description" TEXT,
    "ownerId" TEXT NOT NULL,
    "createdById" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "service_account_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "service_account_role_check" CHECK ("role" IN ('viewer', 'operator', 'approver', 'admin'))
);
CREATE UNIQUE INDEX "service_account_name_key" ON "service_account"("name");
ALTER TABLE "service_account" ADD CONSTRAINT "service_account_ownerId_fkey"
    FOREIGN KEY ("ownerId") REFERENCES "user"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "api_token" (
    "id" TEXT NOT NULL,
    "serviceAccountId" TEXT NOT NULL,
    "tokenHash" TEXT NOT NULL,
    "note" TEXT,
    "createdById" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,
    "revokedAt" TIMESTAMPTZ(3),
    "lastUsedAt" TIMESTAMPTZ(3),

    CONSTRAINT "api_token_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "api_token_tokenHash_check" CHECK ("tokenHash" ~ '^[0-9a-f]{64}$')
);
CREATE INDEX "api_token_serviceAccountId_idx" ON "api_token"("serviceAccountId");
ALTER TABLE "api_token" ADD CONSTRAINT "api_token_serviceAccountId_fkey"
    FOREIGN KEY ("serviceAccountId") REFERENCES "service_account"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Token actions are audited as the service account (actorType 'service', the token's id in data.tokenId).
ALTER TABLE "audit_event" DROP CONSTRAINT "audit_event_actorType_check";
ALTER TABLE "audit_event" ADD CONSTRAINT "audit_event_actorType_check"
    CHECK ("actorType" IN ('user', 'agent', 'system', 'service'));
