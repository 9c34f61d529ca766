-- Fleet: one-time join tokens, agents, the hosts they run on and the hosts' current Python processes.

CREATE TABLE "join_token" (
    "id" TEXT NOT NULL,
    -- SHA-256 (hex) of the clear token; the clear token is shown once and never stored.
    "tokenHash" TEXT NOT NULL,
    "labels" JSONB NOT NULL DEFAULT '{}',
    "note" TEXT,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,
    "usedAt" TIMESTAMPTZ(3),
    "usedByAgentId" TEXT,
    "createdById" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "join_token_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "join_token_tokenHash_check" CHECK ("tokenHash" ~ '^[0-9a-f]{64}$'),
    -- A token is consumed by exactly one agent: both columns are set together or not at all.
    CONSTRAINT "join_token_used_check" CHECK (("usedAt" IS NULL) = ("usedByAgentId" IS NULL))
);
CREATE UNIQUE INDEX "join_token_tokenHash_key" ON "join_token"("tokenHash");
ALTER TABLE "join_token" ADD CONSTRAINT "join_token_createdById_fkey"
    FOREIGN KEY ("createdById") REFERENCES "user"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "agent" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "publicKey" TEXT NOT NULL,
    "labels" JSONB NOT NULL DEFAULT '{}',
    "version" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'offline',
    "lastSeenAt" TIMESTAMPTZ(3),
    "connectedAt" TIMESTAMPTZ(3),
    "outboxDepth" INTEGER NOT NULL DEFAULT 0,
    "revokedAt" TIMESTAMPTZ(3),
    "revokedReason" TEXT,
    "enrolledAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "agent_pkey" PRIMARY KEY ("id"),
    -- Revocation is recorded by revokedAt; status only says whether a socket is attached right now.
    CONSTRAINT "agent_status_check" CHECK ("status" IN ('online', 'offline')),
    CONSTRAINT "agent_labels_check" CHECK (jsonb_typeof("labels") = 'object')
);
CREATE INDEX "agent_status_idx" ON "agent"("status");

CREATE TABLE "host" (
    "id" TEXT NOT NULL,
    "agentId" TEXT NOT NULL,
    "hostname" TEXT NOT NULL,
    "os" TEXT NOT NULL,
    "kernel" TEXT NOT NULL,
    "arch" TEXT NOT NULL,
    "bootId" TEXT,
    "scannedAt" TIMESTAMPTZ(3) NOT NULL,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "host_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "host_agentId_key" ON "host"("agentId");
ALTER TABLE "host" ADD CONSTRAINT "host_agentId_fkey"
    FOREIGN KEY ("agentId") REFERENCES "agent"("id") ON DELETE CASCADE ON UPDATE CASCADE;

CREATE TABLE "python_process" (
    "id" TEXT NOT NULL,
    "hostId" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "nsPid" INTEGER NOT NULL,
    "startTime" TEXT NOT NULL,
    "uid" INTEGER NOT NULL,
    "user" TEXT,
    "exe" TEXT NOT NULL,
    "cmdline" JSONB NOT NULL,
    "cwd" TEXT,
    "pythonVersion" TEXT,
    "freeThreaded" BOOLEAN,
    "remoteDebugEnabled" BOOLEAN,
    "inContainer" BOOLEAN NOT NULL,
    "container" TEXT,
    "threads" JSONB NOT NULL,
    "inspectError" TEXT,
    "seenAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "python_process_pkey" PRIMARY KEY ("id")
);
-- (hostId, pid, startTime) names one process for good; it also serves "processes of a host" lookups.
CREATE UNIQUE INDEX "python_process_hostId_pid_startTime_key" ON "python_process"("hostId", "pid", "startTime");
ALTER TABLE "python_process" ADD CONSTRAINT "python_process_hostId_fkey"
    FOREIGN KEY ("hostId") REFERENCES "host"("id") ON DELETE CASCADE ON UPDATE CASCADE;
