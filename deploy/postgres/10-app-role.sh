#!/bin/sh
# Runs once, when the postgres service initialises an empty data volume (docker-entrypoint-initdb.d).
# Creates the control plane's application role. POSTGRES_USER (pyreach) owns the schema and runs the
# migrations (DATABASE_MIGRATION_URL); pyreach_app is what the control plane connects as (DATABASE_URL). At
# every start the control plane grants pyreach_app what it needs — and only INSERT and SELECT on the audit
# tables (packages/db/src/roles.ts), so the application's credentials cannot rewrite the audit trail.
# An existing volume is not re-initialised: see docs/operations.md ("Database roles") to add the role by hand.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$PYREACH_DB_APP_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE pyreach_app LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT CONNECT ON DATABASE :"db" TO pyreach_app;
SQL
