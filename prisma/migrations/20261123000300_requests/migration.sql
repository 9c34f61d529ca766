-- Requests: policies, injection requests, reviews (votes) and executions (one per target process).

CREATE TABLE "policy" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "matchLabels" JSONB NOT NULL DEFAULT '{}',
    "priority" INTEGER NOT NULL DEFAULT 0,
    "requiredApprovals" INTEGER NOT NULL DEFAULT 1,
    "approverRoles" TEXT[] DEFAULT ARRAY['approver', 'admin']::TEXT[],
    "allowCustomCode" BOOLEAN NOT NULL DEFAULT false,
    "approvalValidMinutes" INTEGER NOT NULL DEFAULT 60,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "policy_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "policy_matchLabels_check" CHECK (jsonb_typeof("matchLabels") = 'object'),
    CONSTRAINT "policy_requiredApprovals_check" CHECK ("requiredApprovals" BETWEEN 0 AND 10),
    CONSTRAINT "policy_approvalValidMinutes_check" CHECK ("approvalValidMinutes" > 0),
    -- Requesters are operators/admins; a policy may only hand approval to roles that exist, and a policy
    -- that needs approvals must name at least one approving role.
    CONSTRAINT "policy_approverRoles_check" CHECK (
        "approverRoles" IS NOT NULL
        AND "approverRoles" <@ ARRAY['viewer', 'operator', 'approver', 'admin']::TEXT[]
        AND ("requiredApprovals" = 0 OR cardinality("approverRoles") > 0)
    )
);
CREATE UNIQUE INDEX "policy_name_key" ON "policy"("name");

CREATE TABLE "injection_request" (
    "id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "scriptId" TEXT,
    "code" TEXT NOT NULL,
    "params" JSONB NOT NULL DEFAULT '{}',
    "targets" JSONB NOT NULL,
    "options" JSONB NOT NULL DEFAULT '{}',
    "rollout" JSONB NOT NULL DEFAULT '{}',
    "contentHash" TEXT NOT NULL,
    "revision" INTEGER NOT NULL DEFAULT 1,
    "reason" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'pending',
    "requiredApprovals" INTEGER NOT NULL,
    "policyId" TEXT,
    "requesterId" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,
    "approvedAt" TIMESTAMPTZ(3),
    "approvalExpiresAt" TIMESTAMPTZ(3),
    "dispatchedAt" TIMESTAMPTZ(3),
    "completedAt" TIMESTAMPTZ(3),

    CONSTRAINT "injection_request_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "injection_request_kind_check" CHECK ("kind" IN ('library', 'custom')),
    CONSTRAINT "injection_request_library_script_check" CHECK (("kind" = 'library') = ("scriptId" IS NOT NULL)),
    -- pending → approved → dispatching → succeeded | failed; pending → rejected | cancelled | expired;
    -- approved → cancelled | expired. services/requests.ts and services/dispatch.ts own the moves.
    CONSTRAINT "injection_request_state_check" CHECK ("state" IN (
        'pending', 'approved', 'rejected', 'cancelled', 'expired', 'dispatching', 'succeeded', 'failed'
    )),
    CONSTRAINT "injection_request_contentHash_check" CHECK ("contentHash" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "injection_request_revision_check" CHECK ("revision" >= 1),
    CONSTRAINT "injection_request_requiredApprovals_check" CHECK ("requiredApprovals" >= 0),
    CONSTRAINT "injection_request_reason_check" CHECK (length(btrim("reason")) > 0)
);
CREATE INDEX "injection_request_state_idx" ON "injection_request"("state");
CREATE INDEX "injection_request_requesterId_idx" ON "injection_request"("requesterId");
ALTER TABLE "injection_request" ADD CONSTRAINT "injection_request_policyId_fkey"
    FOREIGN KEY ("policyId") REFERENCES "policy"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "injection_request" ADD CONSTRAINT "injection_request_requesterId_fkey"
    FOREIGN KEY ("requesterId") REFERENCES "user"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "review" (
    "id" TEXT NOT NULL,
    "requestId" TEXT NOT NULL,
    "reviewerId" TEXT NOT NULL,
    "decision" TEXT NOT NULL,
    "comment" TEXT,
    "contentHash" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "review_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "review_decision_check" CHECK ("decision" IN ('approve', 'reject'))
);
-- One vote per reviewer per content hash: a second vote on the same revision is a unique violation even if
-- two requests race past the service's own check.
CREATE UNIQUE INDEX "review_requestId_reviewerId_contentHash_key" ON "review"("requestId", "reviewerId", "contentHash");
ALTER TABLE "review" ADD CONSTRAINT "review_requestId_fkey"
    FOREIGN KEY ("requestId") REFERENCES "injection_request"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "review" ADD CONSTRAINT "review_reviewerId_fkey"
    FOREIGN KEY ("reviewerId") REFERENCES "user"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "execution" (
    "id" TEXT NOT NULL,
    "requestId" TEXT NOT NULL,
    "agentId" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "startTime" TEXT NOT NULL,
    "tid" INTEGER,
    "jobId" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'queued',
    "lastSeq" INTEGER NOT NULL DEFAULT 0,
    "output" TEXT NOT NULL DEFAULT '',
    "outputBytes" INTEGER NOT NULL DEFAULT 0,
    "result" JSONB,
    "errorCode" TEXT,
    "errorMessage" TEXT,
    "error" JSONB,
    "thread" JSONB,
    "notAfter" TIMESTAMPTZ(3),
    "queuedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sentAt" TIMESTAMPTZ(3),
    "stagedAt" TIMESTAMPTZ(3),
    "pickedUpAt" TIMESTAMPTZ(3),
    "finishedAt" TIMESTAMPTZ(3),
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "execution_pkey" PRIMARY KEY ("id"),
    -- The engine's states (packages/protocol ExecutionState); transitions are checked by canTransition().
    CONSTRAINT "execution_state_check" CHECK ("state" IN (
        'queued', 'sent', 'staged', 'picked_up', 'succeeded', 'failed', 'pickup_timeout', 'target_gone',
        'refused', 'agent_lost', 'expired', 'cancelled'
    )),
    CONSTRAINT "execution_lastSeq_check" CHECK ("lastSeq" >= 0),
    CONSTRAINT "execution_outputBytes_check" CHECK ("outputBytes" >= 0)
);
-- A job id is dispatched at most once, ever.
CREATE UNIQUE INDEX "execution_jobId_key" ON "execution"("jobId");
-- One execution per target process per request, so planning a request twice cannot double the jobs.
CREATE UNIQUE INDEX "execution_requestId_agentId_pid_startTime_key" ON "execution"("requestId", "agentId", "pid", "startTime");
CREATE INDEX "execution_agentId_state_idx" ON "execution"("agentId", "state");
CREATE INDEX "execution_state_idx" ON "execution"("state");
ALTER TABLE "execution" ADD CONSTRAINT "execution_requestId_fkey"
    FOREIGN KEY ("requestId") REFERENCES "injection_request"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "execution" ADD CONSTRAINT "execution_agentId_fkey"
    FOREIGN KEY ("agentId") REFERENCES "agent"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
