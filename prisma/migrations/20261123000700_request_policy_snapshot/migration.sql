-- A request keeps the effective policy it was created (or last edited) under: who may approve and how long an
-- approval lasts. Editing a policy later must not change the rules of requests already in review.
ALTER TABLE "injection_request" ADD COLUMN "approverRoles" TEXT[] DEFAULT ARRAY['approver', 'admin']::TEXT[];
ALTER TABLE "injection_request" ADD COLUMN "approvalValidMinutes" INTEGER NOT NULL DEFAULT 60;
ALTER TABLE "injection_request" ADD CONSTRAINT "injection_request_approverRoles_check" CHECK (
    "approverRoles" IS NOT NULL AND "approverRoles" <@ ARRAY['viewer', 'operator', 'approver', 'admin']::TEXT[]
);
ALTER TABLE "injection_request" ADD CONSTRAINT "injection_request_approvalValidMinutes_check" CHECK ("approvalValidMinutes" > 0);
