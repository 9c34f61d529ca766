-- Control-plane side of issue 10 (host-side hardening).
-- The age of the oldest item still waiting in an agent's outbox (heartbeat), so the fleet view can flag a
-- wedged backlog: a depth that stays up while this grows. NULL: empty, or an agent too old to say.
ALTER TABLE "agent" ADD COLUMN "outboxOldestAgeSeconds" INTEGER;
ALTER TABLE "agent" ADD CONSTRAINT "agent_outboxOldestAgeSeconds_check" CHECK (
    "outboxOldestAgeSeconds" IS NULL OR "outboxOldestAgeSeconds" >= 0
);
-- A cancel asked for while executions were in flight: the request stays dispatching until the agent reported
-- each of them stopped, then ends `cancelled` (not by its outcome).
ALTER TABLE "injection_request" ADD COLUMN "cancelRequestedAt" TIMESTAMPTZ(3);
-- The agent runs one job per target process at a time: the job this execution waits behind (its `queued`
-- event) and how many are ahead of it; cleared once it starts or ends.
ALTER TABLE "execution" ADD COLUMN "queuedBehindJobId" TEXT;
ALTER TABLE "execution" ADD COLUMN "queuedAhead" INTEGER;
-- Code that could not be interrupted (blocked in C past its budget or a cancel): the thread inside the target
-- that may still be running it, as the engine reported it.
ALTER TABLE "execution" ADD COLUMN "leftoverThread" JSONB;
