-- process:inspect (issue 12): one row per inspection a person asked for; the agent's report is stored in it.
CREATE TABLE "process_inspection" (
    "id" TEXT NOT NULL,
    "agentId" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "startTime" TEXT NOT NULL,
    "what" TEXT NOT NULL,
    "requestedBy" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'sent',
    "result" JSONB,
    "errorCode" TEXT,
    "message" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" TIMESTAMPTZ(3),

    CONSTRAINT "process_inspection_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "process_inspection_what_check" CHECK ("what" IN ('stacks', 'tasks')),
    CONSTRAINT "process_inspection_state_check" CHECK ("state" IN ('sent', 'succeeded', 'failed', 'refused'))
);
CREATE INDEX "process_inspection_agentId_pid_idx" ON "process_inspection"("agentId", "pid");
