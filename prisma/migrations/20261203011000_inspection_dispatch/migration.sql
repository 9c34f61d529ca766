-- process:inspect through the fleet (issue 12): the signed job waits in its row (`queued`) until the replica
-- holding the agent's connection claims it (`sent`), like an execution's job; one not delivered or not answered
-- by `notAfter` ends `expired`. States are the table in packages/protocol/src/states.ts (INSPECTION).
ALTER TABLE "process_inspection" ADD COLUMN "envelope" JSONB;
ALTER TABLE "process_inspection" ADD COLUMN "notAfter" TIMESTAMPTZ(3);
ALTER TABLE "process_inspection" ADD COLUMN "sentAt" TIMESTAMPTZ(3);
UPDATE "process_inspection" SET "notAfter" = "createdAt" + interval '60 seconds' WHERE "notAfter" IS NULL;
ALTER TABLE "process_inspection" ALTER COLUMN "notAfter" SET NOT NULL;
ALTER TABLE "process_inspection" ALTER COLUMN "state" SET DEFAULT 'queued';
ALTER TABLE "process_inspection" DROP CONSTRAINT "process_inspection_state_check";
ALTER TABLE "process_inspection" ADD CONSTRAINT "process_inspection_state_check"
  CHECK ("state" IN ('queued', 'sent', 'succeeded', 'failed', 'refused', 'expired'));
CREATE INDEX "process_inspection_state_agentId_idx" ON "process_inspection"("state", "agentId");
