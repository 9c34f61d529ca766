-- Reusable join tokens (issue 14, item 1): a fleet (a Kubernetes DaemonSet, an autoscaling group) enrols many
-- hosts with one token. A token gains a use limit (maxUses; NULL = unlimited, 1 = the old one-time token), a
-- use count, an optional host-name glob the enrolling agent's reported host name must match, and revocation.
-- The link between an agent and the token it enrolled with moves onto the agent ("joinTokenId"): one token,
-- many agents. Existing data: every agent a used token names gets that token, then the old single-use columns
-- go (a used token counts one use).

ALTER TABLE "join_token" ADD COLUMN "maxUses" INTEGER DEFAULT 1;
ALTER TABLE "join_token" ADD COLUMN "useCount" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "join_token" ADD COLUMN "hostPattern" TEXT;
ALTER TABLE "join_token" ADD COLUMN "lastUsedAt" TIMESTAMPTZ(3);
ALTER TABLE "join_token" ADD COLUMN "revokedAt" TIMESTAMPTZ(3);
ALTER TABLE "join_token" ADD COLUMN "revokedById" TEXT;
-- Refusals of a known token are audited at most once a minute per token (a leaked, used-up token replayed in a
-- loop must not flood the append-only audit table); the others are counted here and carried by the next one.
ALTER TABLE "join_token" ADD COLUMN "refusedCount" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "join_token" ADD COLUMN "refusalAuditedAt" TIMESTAMPTZ(3);

ALTER TABLE "agent" ADD COLUMN "joinTokenId" TEXT;
UPDATE "agent" a SET "joinTokenId" = t."id"
  FROM "join_token" t
  WHERE t."usedByAgentId" = a."id" AND a."joinTokenId" IS NULL;
UPDATE "join_token" SET "useCount" = 1, "lastUsedAt" = "usedAt" WHERE "usedAt" IS NOT NULL;

ALTER TABLE "join_token" DROP CONSTRAINT "join_token_used_check";
ALTER TABLE "join_token" DROP COLUMN "usedAt";
ALTER TABLE "join_token" DROP COLUMN "usedByAgentId";

-- The enrolment's conditional update (useCount < maxUses) is the limit; these say it can never be broken.
ALTER TABLE "join_token" ADD CONSTRAINT "join_token_uses_check" CHECK (
  "useCount" >= 0 AND ("maxUses" IS NULL OR ("maxUses" >= 1 AND "useCount" <= "maxUses"))
);
ALTER TABLE "join_token" ADD CONSTRAINT "join_token_hostPattern_check" CHECK (
  "hostPattern" IS NULL OR (length("hostPattern") BETWEEN 1 AND 255)
);
ALTER TABLE "join_token" ADD CONSTRAINT "join_token_revoked_check" CHECK (
  ("revokedAt" IS NULL) = ("revokedById" IS NULL)
);

ALTER TABLE "agent" ADD CONSTRAINT "agent_joinTokenId_fkey"
    FOREIGN KEY ("joinTokenId") REFERENCES "join_token"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
-- Listing a token's agents, and finding the agent a re-enrolling host replaces (token + host name).
CREATE INDEX "agent_joinTokenId_name_idx" ON "agent"("joinTokenId", "name");
