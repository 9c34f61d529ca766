-- Issue 16 item 4: a request whose targets partly succeeded ends `partially_succeeded` (the state table in
-- packages/protocol/src/states.ts); the CHECK lists the same names.
ALTER TABLE "injection_request" DROP CONSTRAINT "injection_request_state_check";
ALTER TABLE "injection_request" ADD CONSTRAINT "injection_request_state_check" CHECK ("state" IN (
    'pending', 'approved', 'rejected', 'cancelled', 'expired', 'dispatching', 'succeeded', 'partially_succeeded',
    'failed'
));
