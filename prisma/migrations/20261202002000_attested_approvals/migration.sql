-- Issue 11, items 1–3: votes carry an attestation the control plane signed at vote time with a key held
-- outside the database; an execution may wait for the approvals a stricter policy at dispatch needs; what
-- an agent reports about itself is kept apart from the labels that decide policy.

-- The role the reviewer voted in and the Ed25519 signature over (review id, request id, content hash,
-- reviewer, role, decision, time, requester), with the attestation key's id. A row without a valid one
-- (written behind the control plane's back) counts for nothing at dispatch.
ALTER TABLE "review" ADD COLUMN "role" TEXT;
ALTER TABLE "review" ADD COLUMN "attestation" TEXT;
ALTER TABLE "review" ADD COLUMN "attestationKeyId" TEXT;

ALTER TABLE "execution" DROP CONSTRAINT "execution_state_check";
ALTER TABLE "execution" ADD CONSTRAINT "execution_state_check" CHECK ("state" IN (
    'queued', 'awaiting_approval', 'sent', 'staged', 'picked_up', 'succeeded', 'failed', 'pickup_timeout',
    'target_gone', 'refused', 'agent_lost', 'expired', 'cancelled'
));

-- Labels the agent reports in its inventory: shown as "reported", never matched by a policy. "labels" holds
-- only what the join token (or an admin) set.
ALTER TABLE "agent" ADD COLUMN "reportedLabels" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "agent" ADD CONSTRAINT "agent_reportedLabels_check" CHECK (jsonb_typeof("reportedLabels") = 'object');

-- Issue 11, item 4: policies match on the action too ({kinds?, scripts?, risks?}; {} matches every action).
ALTER TABLE "policy" ADD COLUMN "matchAction" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "policy" ADD CONSTRAINT "policy_matchAction_check" CHECK (jsonb_typeof("matchAction") = 'object');
