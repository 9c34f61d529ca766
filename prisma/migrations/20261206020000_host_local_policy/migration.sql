-- Issue 16 (pre-flight): the agent's local policy as reported with its host facts (NULL for older agents).
ALTER TABLE "host" ADD COLUMN "localPolicy" JSONB;
