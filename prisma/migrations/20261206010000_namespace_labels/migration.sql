-- Issue 14 item 3: an admin declares, per join token or per agent, which namespaces carry which policy labels.
ALTER TABLE "join_token" ADD COLUMN "namespaceLabels" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "agent" ADD COLUMN "namespaceLabels" JSONB;
-- A change of a declaration that loosens a policy for some process is a governance change like the others.
ALTER TABLE "governance_change" DROP CONSTRAINT "governance_change_kind_check";
ALTER TABLE "governance_change" ADD CONSTRAINT "governance_change_kind_check"
  CHECK ("kind" IN ('user.create', 'user.role', 'policy.create', 'policy.update', 'policy.delete',
                    'namespace_labels.set'));
