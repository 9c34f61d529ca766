-- A database writer must not choose the rules that decide a request: the control plane seals the whole policy set
-- (a digest of every row's rules, signed with the attestation key outside the database) with each policy write, and
-- filing, preview and dispatch use the policies only while the seal verifies. One row (id = 1). No row yet: an
-- install whose policies were never written through the control plane (only this project's default policy, no
-- policy.* audit event) is trusted as it is; any other unsealed set is refused until an admin runs
-- `npm run -w apps/web seal-policies` (docs/operations.md, upgrade). SQL cannot sign, so there is no backfill.
CREATE TABLE "policy_seal" (
    "id" INTEGER NOT NULL DEFAULT 1,
    "version" BIGINT NOT NULL,
    "digest" TEXT NOT NULL,
    "keyId" TEXT NOT NULL,
    "signature" TEXT NOT NULL,
    "sealedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "policy_seal_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "policy_seal_one_row" CHECK ("id" = 1)
);
