-- Keys and audit: public halves of the job-signing keys, and the append-only, hash-chained audit trail.

CREATE TABLE "signing_key" (
    -- keyId: SHA-256 (hex) of the public key's SPKI DER, as carried in every job envelope.
    "id" TEXT NOT NULL,
    "publicKey" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "retiredAt" TIMESTAMPTZ(3),

    CONSTRAINT "signing_key_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "audit_event" (
    -- Assigned by services/audit.ts under a transaction-scoped advisory lock: contiguous from 1, no gaps.
    "seq" BIGINT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "actorType" TEXT NOT NULL,
    "actorId" TEXT,
    "actorName" TEXT,
    "action" TEXT NOT NULL,
    "subjectType" TEXT,
    "subjectId" TEXT,
    "data" JSONB NOT NULL DEFAULT '{}',
    "prevHash" TEXT NOT NULL,
    "hash" TEXT NOT NULL,

    CONSTRAINT "audit_event_pkey" PRIMARY KEY ("seq"),
    CONSTRAINT "audit_event_seq_check" CHECK ("seq" >= 1),
    CONSTRAINT "audit_event_actorType_check" CHECK ("actorType" IN ('user', 'agent', 'system')),
    CONSTRAINT "audit_event_hash_check" CHECK ("hash" ~ '^[0-9a-f]{64}$' AND "prevHash" ~ '^[0-9a-f]{64}$')
);
CREATE UNIQUE INDEX "audit_event_hash_key" ON "audit_event"("hash");
-- Filter indexes end in seq so a filtered page is an index range scan in seq order (keyset pagination).
CREATE INDEX "audit_event_at_idx" ON "audit_event"("at");
CREATE INDEX "audit_event_actorId_seq_idx" ON "audit_event"("actorId", "seq");
CREATE INDEX "audit_event_action_seq_idx" ON "audit_event"("action", "seq");
CREATE INDEX "audit_event_subjectType_subjectId_seq_idx" ON "audit_event"("subjectType", "subjectId", "seq");

-- Free-text search over the audit trail. Not expressible in schema.prisma (an expression index), so the
-- drift test lists it as a known SQL-only object. services/audit.ts calls the same function in its WHERE
-- clause, which is what lets the planner use the index.
CREATE FUNCTION "audit_event_search"(action TEXT, actor_name TEXT, subject_type TEXT, subject_id TEXT, data JSONB)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig,
           action || ' ' || coalesce(actor_name, '') || ' ' || coalesce(subject_type, '') || ' ' || coalesce(subject_id, ''))
       || jsonb_to_tsvector('simple'::regconfig, data, '["string", "numeric"]');

CREATE INDEX "audit_event_search_idx" ON "audit_event"
    USING GIN ("audit_event_search"("action", "actorName", "subjectType", "subjectId", "data"));

-- Append-only: the database itself refuses to rewrite history, whoever asks. (A superuser can still disable
-- the trigger; the hash chain is what catches that — see verifyAuditChain.)
CREATE FUNCTION "audit_event_refuse_change"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit events can only be inserted; corrections are new events.';
END;
$$;

CREATE TRIGGER "audit_event_no_update" BEFORE UPDATE ON "audit_event"
    FOR EACH ROW EXECUTE FUNCTION "audit_event_refuse_change"();
CREATE TRIGGER "audit_event_no_delete" BEFORE DELETE ON "audit_event"
    FOR EACH ROW EXECUTE FUNCTION "audit_event_refuse_change"();
CREATE TRIGGER "audit_event_no_truncate" BEFORE TRUNCATE ON "audit_event"
    FOR EACH STATEMENT EXECUTE FUNCTION "audit_event_refuse_change"();
