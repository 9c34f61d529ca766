-- Container identity per process (issue 14): the agent's structured ContainerIdentity (runtime, container id,
-- pod uid and, with Kubernetes API access, the pod's name, namespace, container name, labels and owning
-- workload), stored as reported and parsed with the protocol's schema on read. NULL for host processes.
-- Selectors and the fleet filter by pod facts with JSONB containment (`@>`): one GIN index with
-- jsonb_path_ops serves namespace, container, workload and label-set terms alike, in PostgreSQL and PGlite.
-- These facts select targets; policies never read this column (they match the agent's host labels).
ALTER TABLE "python_process" ADD COLUMN "containerIdentity" JSONB;

CREATE INDEX "python_process_containerIdentity_idx" ON "python_process" USING GIN ("containerIdentity" jsonb_path_ops);
