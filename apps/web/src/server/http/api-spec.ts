/**
 * Every HTTP route's contract in one table: method, path, who may call it (an action of services/actor.ts),
 * and the zod schemas of params, query and body. Route files implement them with handle(); the OpenAPI
 * document and the role × action tests are generated from this table. Browser-safe: zod and protocol only.
 */
import { z } from 'zod';
import { EnrollRequest, EnrollResponse } from '@pyreach/protocol/agent';
import { JobOptions } from '@pyreach/protocol/job';
import { Id, JsonObject, Labels } from '@pyreach/protocol/common';
import { defineRoute } from './spec';

const IdParam = z.object({ id: Id });
const Role = z.enum(['viewer', 'operator', 'approver', 'admin']);
const Bool = z.enum(['true', 'false']).transform((v) => v === 'true');
const LabelsQuery = z
  .string()
  .max(2048)
  .transform((s, ctx) => {
    const out: Record<string, string> = {};
    for (const pair of s.split(',').filter(Boolean)) {
      const i = pair.indexOf('=');
      if (i <= 0) {
        ctx.addIssue({ code: 'custom', message: `label '${pair}' is not key=value` });
        return z.NEVER;
      }
      out[pair.slice(0, i)] = pair.slice(i + 1);
    }
    return out;
  })
  .pipe(Labels);

export const Selector = z.object({
  labels: Labels.default({}),
  process: z
    .object({
      cmdlineContains: z.string().max(256).optional(),
      user: z.string().max(256).optional(),
      exeContains: z.string().max(256).optional(),
    })
    .strict()
    .optional(),
});

/** Mirrors services/policy.ts PolicyInput (which re-validates); kept here so routes stay free of the DB client. */
export const PolicyBody = z
  .object({
    name: z.string().min(1).max(100),
    description: z.string().max(1000).nullable().optional(),
    matchLabels: Labels.optional(),
    priority: z.number().int().min(-100_000).max(100_000).optional(),
    requiredApprovals: z.number().int().min(0).max(10).optional(),
    approverRoles: z.array(Role).max(4).optional(),
    allowCustomCode: z.boolean().optional(),
    approvalValidMinutes: z.number().int().min(1).max(10080).optional(),
  })
  .strict();

/** Mirrors services/requests.ts (which re-validates everything, including cross-field rules). */
const ExplicitTarget = z.object({
  agentId: Id,
  pid: z.number().int().positive(),
  startTime: z.string().regex(/^\d+$/),
  tid: z.number().int().positive().optional(),
});
export const Targets = z.discriminatedUnion('type', [
  z.object({ type: z.literal('processes'), processes: z.array(ExplicitTarget).min(1).max(1000) }),
  z.object({ type: z.literal('selector'), labels: Labels, process: Selector.shape.process }),
]);
const Rollout = z.object({
  concurrency: z.number().int().min(1).max(1000).optional(),
  maxFailures: z.number().int().min(1).max(10000).optional(),
});
export const CreateRequestBody = z
  .object({
    kind: z.enum(['library', 'custom']),
    scriptId: z.string().min(1).max(128).nullable().optional(),
    /** For library requests the server fills in the script's source when omitted. */
    code: z.string().min(1).optional(),
    params: JsonObject.optional(),
    targets: Targets,
    reason: z.string().min(3).max(2000),
    rollout: Rollout.optional(),
    options: JobOptions.partial().optional(),
  })
  .strict();
export const UpdateRequestBody = z
  .object({
    code: z.string().min(1).optional(),
    params: JsonObject.optional(),
    targets: Targets.optional(),
    reason: z.string().min(3).max(2000).optional(),
    rollout: Rollout.optional(),
    options: JobOptions.partial().optional(),
  })
  .strict();

export const api = {
  health: defineRoute({
    method: 'GET',
    path: '/api/health',
    summary: 'Liveness and database reachability',
    tag: 'system',
    auth: 'public',
  }),
  openapi: defineRoute({
    method: 'GET',
    path: '/api/openapi.json',
    summary: 'This API as OpenAPI 3.1',
    tag: 'system',
    auth: 'public',
  }),
  me: defineRoute({
    method: 'GET',
    path: '/api/me',
    summary: 'The signed-in user, role and re-authentication state',
    tag: 'users',
    auth: 'session',
  }),

  listUsers: defineRoute({
    method: 'GET',
    path: '/api/users',
    summary: 'List users',
    tag: 'users',
    auth: { action: 'user:manage' },
  }),
  createUser: defineRoute({
    method: 'POST',
    path: '/api/users',
    summary: 'Create a password user with a role',
    tag: 'users',
    auth: { action: 'user:manage' },
    status: 201,
    body: z
      .object({
        email: z.email().max(320),
        name: z.string().min(1).max(200),
        password: z.string().min(12).max(256),
        role: Role,
      })
      .strict(),
  }),
  setUserRole: defineRoute({
    method: 'PATCH',
    path: '/api/users/{id}',
    summary: "Change a user's role",
    tag: 'users',
    auth: { action: 'user:manage' },
    params: z.object({ id: z.string().min(1).max(128) }),
    body: z.object({ role: Role }).strict(),
  }),

  createJoinToken: defineRoute({
    method: 'POST',
    path: '/api/join-tokens',
    summary: 'Create a one-time agent join token (the clear token is returned once)',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    status: 201,
    body: z
      .object({
        labels: Labels.optional(),
        ttlMinutes: z.number().int().min(1).max(10080).optional(),
        note: z.string().max(500).optional(),
      })
      .strict(),
  }),
  enroll: defineRoute({
    method: 'POST',
    path: '/api/agents/enroll',
    summary: 'Enrol an agent with a join token and its Ed25519 public key',
    tag: 'agents',
    auth: 'public',
    status: 201,
    maxBodyBytes: 16 * 1024,
    body: EnrollRequest,
    response: EnrollResponse,
  }),
  listAgents: defineRoute({
    method: 'GET',
    path: '/api/agents',
    summary: 'List agents',
    tag: 'agents',
    auth: { action: 'fleet:read' },
    query: z
      .object({ status: z.enum(['online', 'offline']).optional(), includeRevoked: Bool.optional() })
      .strict(),
  }),
  getAgent: defineRoute({
    method: 'GET',
    path: '/api/agents/{id}',
    summary: 'One agent',
    tag: 'agents',
    auth: { action: 'fleet:read' },
    params: IdParam,
  }),
  revokeAgent: defineRoute({
    method: 'POST',
    path: '/api/agents/{id}/revoke',
    summary: 'Revoke an agent: its connection drops now and it is refused from then on',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    params: IdParam,
    body: z.object({ reason: z.string().min(1).max(1024) }).strict(),
  }),

  listHosts: defineRoute({
    method: 'GET',
    path: '/api/fleet/hosts',
    summary: 'Hosts with their agent and process count',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    query: z.object({ labels: LabelsQuery.optional(), includeRevoked: Bool.optional() }).strict(),
  }),
  listProcesses: defineRoute({
    method: 'GET',
    path: '/api/fleet/processes',
    summary: 'Python processes across the fleet',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    query: z
      .object({
        agentId: Id.optional(),
        hostId: Id.optional(),
        labels: LabelsQuery.optional(),
        cmdlineContains: z.string().max(256).optional(),
        user: z.string().max(256).optional(),
        exeContains: z.string().max(256).optional(),
        limit: z.coerce.number().int().min(1).max(10000).optional(),
      })
      .strict(),
  }),
  previewSelector: defineRoute({
    method: 'POST',
    path: '/api/fleet/preview',
    summary: 'Processes a selector resolves to right now',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    body: Selector.extend({ limit: z.number().int().min(1).max(10000).optional() }).strict(),
  }),
  listScripts: defineRoute({
    method: 'GET',
    path: '/api/scripts',
    summary: 'Built-in script library',
    tag: 'requests',
    auth: { action: 'request:read' },
  }),

  listRequests: defineRoute({
    method: 'GET',
    path: '/api/requests',
    summary: 'Requests, newest first',
    tag: 'requests',
    auth: { action: 'request:read' },
    query: z
      .object({
        state: z.string().max(32).optional(),
        requesterId: z.string().max(128).optional(),
        cursor: Id.optional(),
        limit: z.coerce.number().int().min(1).max(200).optional(),
      })
      .strict(),
  }),
  createRequest: defineRoute({
    method: 'POST',
    path: '/api/requests',
    summary: 'Ask to run code or a library script on targets',
    tag: 'requests',
    auth: { action: 'request:create' },
    status: 201,
    body: CreateRequestBody,
  }),
  getRequest: defineRoute({
    method: 'GET',
    path: '/api/requests/{id}',
    summary: 'A request with reviews, executions, output and results',
    tag: 'requests',
    auth: { action: 'request:read' },
    params: IdParam,
  }),
  updateRequest: defineRoute({
    method: 'PATCH',
    path: '/api/requests/{id}',
    summary: 'Edit a pending request (voids earlier approvals when code, params or targets change)',
    tag: 'requests',
    auth: { action: 'request:create' },
    params: IdParam,
    body: UpdateRequestBody,
  }),
  cancelRequest: defineRoute({
    method: 'POST',
    path: '/api/requests/{id}/cancel',
    summary: 'Cancel a request',
    tag: 'requests',
    auth: { action: 'request:cancel' },
    params: IdParam,
    body: z.object({ reason: z.string().max(2000).optional() }).strict(),
  }),
  reviewRequest: defineRoute({
    method: 'POST',
    path: '/api/requests/{id}/reviews',
    summary: 'Approve or reject (needs a sign-in within the re-authentication window)',
    tag: 'requests',
    auth: { action: 'request:review' },
    params: IdParam,
    body: z
      .object({ decision: z.enum(['approve', 'reject']), comment: z.string().max(2000).optional() })
      .strict(),
  }),

  listPolicies: defineRoute({
    method: 'GET',
    path: '/api/policies',
    summary: 'Approval policies, highest priority first',
    tag: 'policies',
    auth: { action: 'policy:read' },
  }),
  createPolicy: defineRoute({
    method: 'POST',
    path: '/api/policies',
    summary: 'Create a policy',
    tag: 'policies',
    auth: { action: 'policy:manage' },
    status: 201,
    body: PolicyBody,
  }),
  getPolicy: defineRoute({
    method: 'GET',
    path: '/api/policies/{id}',
    summary: 'One policy',
    tag: 'policies',
    auth: { action: 'policy:read' },
    params: IdParam,
  }),
  updatePolicy: defineRoute({
    method: 'PUT',
    path: '/api/policies/{id}',
    summary: "Replace a policy's rules",
    tag: 'policies',
    auth: { action: 'policy:manage' },
    params: IdParam,
    body: PolicyBody,
  }),
  deletePolicy: defineRoute({
    method: 'DELETE',
    path: '/api/policies/{id}',
    summary: 'Delete a policy (not the default)',
    tag: 'policies',
    auth: { action: 'policy:manage' },
    params: IdParam,
  }),

  queryAudit: defineRoute({
    method: 'GET',
    path: '/api/audit',
    summary: 'Audit events, newest first, keyset-paginated',
    tag: 'audit',
    auth: { action: 'audit:read' },
    query: z
      .object({
        actorId: z.string().max(128).optional(),
        action: z.string().max(128).optional(),
        subjectType: z.string().max(64).optional(),
        subjectId: z.string().max(128).optional(),
        from: z.iso.datetime({ offset: true }).optional(),
        to: z.iso.datetime({ offset: true }).optional(),
        text: z.string().max(256).optional(),
        cursor: z
          .string()
          .regex(/^\d{1,19}$/)
          .optional(),
        limit: z.coerce.number().int().min(1).max(500).optional(),
      })
      .strict(),
  }),
  verifyAudit: defineRoute({
    method: 'GET',
    path: '/api/audit/verify',
    summary: 'Verify the hash chain; names the first broken event',
    tag: 'audit',
    auth: { action: 'audit:read' },
  }),
  exportAudit: defineRoute({
    method: 'GET',
    path: '/api/audit/export',
    summary: 'Stream audit events as JSON Lines or CSV',
    tag: 'audit',
    auth: { action: 'audit:export' },
    produces: 'application/x-ndjson',
    query: z
      .object({
        format: z.enum(['jsonl', 'csv']).default('jsonl'),
        actorId: z.string().max(128).optional(),
        action: z.string().max(128).optional(),
        subjectType: z.string().max(64).optional(),
        subjectId: z.string().max(128).optional(),
        from: z.iso.datetime({ offset: true }).optional(),
        to: z.iso.datetime({ offset: true }).optional(),
      })
      .strict(),
  }),
};

export type ApiName = keyof typeof api;
export { IdParam, JsonObject };
