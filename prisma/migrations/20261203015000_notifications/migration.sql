-- Notifications (issue 13): admin-managed rules that send request events to signed generic webhooks or Slack
-- incoming webhooks, and the durable outbox they leave from. An outbox row is written in the same transaction
-- as the audited state change that causes it (services/notifications-outbox.ts), one row per matching rule;
-- its id is the idempotency key receivers dedupe on. A worker claims due rows with a lease (leaseOwner,
-- leaseUntil), so a control plane killed mid-delivery leaves a row another worker takes once the lease lapses.

CREATE TABLE "notification_rule" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "events" TEXT[],
    "policyId" TEXT,
    "targetLabels" JSONB NOT NULL DEFAULT '{}',
    "states" TEXT[],
    "channel" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "secret" TEXT NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "createdById" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "notification_rule_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "notification_rule_channel_check" CHECK ("channel" IN ('webhook', 'slack'))
);
CREATE UNIQUE INDEX "notification_rule_name_key" ON "notification_rule"("name");

CREATE TABLE "notification_outbox" (
    "id" TEXT NOT NULL,
    "ruleId" TEXT NOT NULL,
    "eventKey" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "nextAttemptAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "leaseOwner" TEXT,
    "leaseUntil" TIMESTAMPTZ(3),
    "lastError" TEXT,
    "lastStatus" INTEGER,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deliveredAt" TIMESTAMPTZ(3),

    CONSTRAINT "notification_outbox_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "notification_outbox_status_check" CHECK ("status" IN ('pending', 'delivered', 'failed'))
);
CREATE UNIQUE INDEX "notification_outbox_ruleId_eventKey_key" ON "notification_outbox"("ruleId", "eventKey");
CREATE INDEX "notification_outbox_status_nextAttemptAt_idx" ON "notification_outbox"("status", "nextAttemptAt");
CREATE INDEX "notification_outbox_ruleId_createdAt_idx" ON "notification_outbox"("ruleId", "createdAt");
ALTER TABLE "notification_outbox" ADD CONSTRAINT "notification_outbox_ruleId_fkey"
    FOREIGN KEY ("ruleId") REFERENCES "notification_rule"("id") ON DELETE CASCADE ON UPDATE CASCADE;
