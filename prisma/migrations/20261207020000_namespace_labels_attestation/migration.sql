-- A database writer must not choose which policy a process falls under: every namespace declaration the control
-- plane writes (at token mint, at enrolment — the agent's NULL, "follow the token" — and with every
-- namespace_labels.set) is signed with the attestation key, outside the database. A row that does not verify
-- (written behind the control plane's back, or from before this migration) prices no process in a namespace:
-- those are refused until an admin declares again. No backfill: SQL cannot sign.
ALTER TABLE "join_token" ADD COLUMN "namespaceLabelsAttestation" TEXT;
ALTER TABLE "agent" ADD COLUMN "namespaceLabelsAttestation" TEXT;
