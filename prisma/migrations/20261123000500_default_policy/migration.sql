-- The fallback policy: matches every host ({}), lowest priority, so a fresh install is usable at once and
-- every request still needs one human approval by an approver or admin who sees the exact code.
-- Custom code is allowed here because ad-hoc diagnostics are Pyreach's main use and the approver reviews
-- the very bytes that get signed (any edit voids the approval); environments that want library scripts only
-- add a higher-priority policy (e.g. {"env":"prod"}, allowCustomCode = false). Admins may edit this row;
-- ON CONFLICT keeps this migration from ever overwriting their choice.
INSERT INTO "policy" ("id", "name", "description", "matchLabels", "priority", "requiredApprovals",
                      "approverRoles", "allowCustomCode", "approvalValidMinutes", "updatedAt")
VALUES ('default', 'default', 'Applies to every host no other policy matches: one approval by an approver or admin.',
        '{}', -1000, 1, ARRAY['approver', 'admin']::TEXT[], true, 60, CURRENT_TIMESTAMP)
ON CONFLICT DO NOTHING;
