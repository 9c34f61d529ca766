-- Signed checkpoints of the audit chain: "the chain had seq events and event seq's hash was headHash",
-- signed (Ed25519) by a key that never enters the database (PYREACH_AUDIT_KEY_FILE). Verify compares the chain
-- with them: a chain cut short or rewritten with recomputed hashes no longer matches a checkpoint. One per
-- head: taking a checkpoint of an unchanged head adds nothing. Append-only, like audit_event.
CREATE TABLE "audit_checkpoint" (
    "seq" BIGINT NOT NULL,
    "headHash" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "keyId" TEXT NOT NULL,
    "signature" TEXT NOT NULL,

    CONSTRAINT "audit_checkpoint_pkey" PRIMARY KEY ("seq"),
    CONSTRAINT "audit_checkpoint_seq_check" CHECK ("seq" >= 1),
    CONSTRAINT "audit_checkpoint_hash_check" CHECK ("headHash" ~ '^[0-9a-f]{64}$' AND "keyId" ~ '^[0-9a-f]{64}$')
);

CREATE TRIGGER "audit_checkpoint_no_update" BEFORE UPDATE ON "audit_checkpoint"
    FOR EACH ROW EXECUTE FUNCTION "audit_event_refuse_change"();
CREATE TRIGGER "audit_checkpoint_no_delete" BEFORE DELETE ON "audit_checkpoint"
    FOR EACH ROW EXECUTE FUNCTION "audit_event_refuse_change"();
CREATE TRIGGER "audit_checkpoint_no_truncate" BEFORE TRUNCATE ON "audit_checkpoint"
    FOR EACH STATEMENT EXECUTE FUNCTION "audit_event_refuse_change"();
