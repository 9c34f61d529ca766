-- Changes that undo themselves (issue 16 item 3): the follow-ups of an approved logging.set_level with a duration,
-- one per execution and mode. `check` is scheduled when the change succeeded, due at its expiry; `now` is "Restore
-- now". A replica claims one `scheduled → sent` (conditional on the state: exactly once) and signs its job then,
-- from the approved request's content only. States: RESTORE_RUN in packages/protocol/src/states.ts.
CREATE TABLE "restore_run" (
    "id" TEXT NOT NULL,
    "requestId" TEXT NOT NULL,
    "executionId" TEXT NOT NULL,
    "agentId" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "startTime" TEXT NOT NULL,
    "mode" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'scheduled',
    "dueAt" TIMESTAMPTZ(3) NOT NULL,
    "outcome" TEXT,
    "result" JSONB,
    "errorCode" TEXT,
    "message" TEXT,
    "requestedBy" TEXT NOT NULL,
    "notAfter" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sentAt" TIMESTAMPTZ(3),
    "finishedAt" TIMESTAMPTZ(3),

    CONSTRAINT "restore_run_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "restore_run_mode_check" CHECK ("mode" IN ('check', 'now')),
    CONSTRAINT "restore_run_state_check"
      CHECK ("state" IN ('scheduled', 'sent', 'succeeded', 'failed', 'refused', 'expired'))
);
-- One check and at most one "restore now" per execution: scheduling twice (a redelivered result) schedules once.
CREATE UNIQUE INDEX "restore_run_executionId_mode_key" ON "restore_run"("executionId", "mode");
CREATE INDEX "restore_run_state_dueAt_idx" ON "restore_run"("state", "dueAt");
CREATE INDEX "restore_run_requestId_idx" ON "restore_run"("requestId");
