-- Agent lost (issue 13, notifications): when an agent's connection has been gone longer than
-- PYREACH_AGENT_LOST_AFTER_SECONDS, the control plane records `agent.lost` once (audited, with its outbox rows in
-- the same transaction). "lostAt" is that claim: set by ONE conditional UPDATE (still offline, not revoked, not
-- yet lost, last seen before the cut-off), so two replicas sweeping at once record the loss once; cleared when the
-- agent connects again, so the next loss is told again.
ALTER TABLE "agent" ADD COLUMN "lostAt" TIMESTAMPTZ(3);
