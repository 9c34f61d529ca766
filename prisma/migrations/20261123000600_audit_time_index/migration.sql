-- Time-range filters on the audit trail are turned into seq ranges (`at` never decreases along seq: see
-- appendAudit). Finding the first/last seq of a time range is then one probe of an (at, seq) index, which
-- a plain (at) index cannot answer in seq order when several events share a millisecond.
DROP INDEX "audit_event_at_idx";
CREATE INDEX "audit_event_at_seq_idx" ON "audit_event"("at", "seq");
