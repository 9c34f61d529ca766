/**
 * Every HTTP route's contract in one table: method, path, who may call it (an action of api.ts), the zod
 * schemas of params, query, body and response. Route files implement them with handle() (apps/web); the
 * OpenAPI document, the role × action tests and the browser's typed client are derived from this table.
 * Browser-safe: zod only.
 */
import { z } from 'zod';
import { EnrollRequest, EnrollResponse } from './agent';
import { PreflightReport } from './preflight';
import { Id, Labels } from './common';
import {
  AgentRow,
  AuditEventRow,
  AuditHealth,
  ApiTokenRow,
  AuditVerification,
  CreateApiToken,
  CreateServiceAccount,
  CreateJoinToken,
  CreateRequest,
  CreateUser,
  BreakGlassGrantRow,
  CloseAfterReview,
  CreateBreakGlassGrant,
  DecideGovernanceChange,
  GovernanceChangeRow,
  NamespaceLabels,
  SetAgentNamespaceLabels,
  FleetPage,
  FleetProcessDetail,
  HostSummary,
  InspectionView,
  InspectProcessBody,
  JoinTokenRow,
  Liveness,
  Me,
  PodMatch,
  PolicyInput,
  PolicyPreview,
  PolicyPreviewBody,
  PreflightBody,
  PolicyRow,
  Readiness,
  RequestDetail,
  RequestRestore,
  SetTemporaryPassword,
  SetUserDisabled,
  RequestRow,
  Review,
  Role,
  ScriptSummary,
  Selector,
  ServiceAccountRow,
  TargetProcess,
  UpdateRequest,
  UserRow,
  CreateNotificationRule,
  NotificationDeliveryRow,
  NotificationRuleRow,
  UpdateNotificationRule,
  type Action,
} from './api';

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface RouteSpec {
  method: Method;
  /** OpenAPI-style path, e.g. /api/requests/{id}. */
  path: string;
  summary: string;
  tag: string;
  /** 'public': no session; 'session': any signed-in user; { action }: the role must be allowed it. */
  auth: 'public' | 'session' | { action: Action };
  /** For public routes that still want to know who is calling. */
  optionalSession?: boolean;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  /** The success body without `ok: true` (the client parses it; absent for streams and documents). */
  response?: z.ZodType;
  status?: number;
  maxBodyBytes?: number;
  /** Streams a non-JSON body (export). */
  produces?: string;
}

export const defineRoute = <const S extends RouteSpec>(spec: S): S => spec;

const IdParam = z.object({ id: Id });
const Bool = z.enum(['true', 'false']).transform((v) => v === 'true');
/** `key=value,key=value` in a query string. */
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
/**
 * The fleet's one query shape: the fleet page and the new-request form's target picker both page and filter
 * processes with it (GET /api/ui/fleet), so a search finds the same processes in both.
 */
export const FleetQuery = z
  .object({
    includeRevoked: Bool.optional(),
    /** Words that must all appear in hostname, pid, user, executable, command line, container or version. */
    q: z.string().max(256).optional(),
    /** Hosts whose agent has all these labels (`key=value,...`). */
    label: LabelsQuery.optional(),
    status: z.enum(['online', 'offline']).optional(),
    debug: z.enum(['on', 'off', 'unknown']).optional(),
    /** Processes in pods of this Kubernetes namespace (as their agent reports it). */
    namespace: PodMatch.shape.namespace,
    /** Processes in pods of this workload: `Kind/name` or `name` (e.g. `Deployment/checkout`). */
    workload: z
      .string()
      .max(317)
      .regex(/^([A-Z][A-Za-z0-9]{0,62}\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected Kind/name or name')
      .optional(),
    /** `host` (default): hostname, pid; `pod`: namespace, workload, pod, then hostname, pid. */
    order: z.enum(['host', 'pod']).optional(),
    offset: z.coerce.number().int().min(0).max(1_000_000).optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
  })
  .strict();
export type FleetQuery = z.input<typeof FleetQuery>;
const AuditFilter = {
  actorId: z.string().max(128).optional(),
  /** Who acted, as a person types it: a user's or agent's name, or a user's e-mail (case-insensitive). */
  actor: z.string().min(1).max(256).optional(),
  action: z.string().max(128).optional(),
  subjectType: z.string().max(64).optional(),
  subjectId: z.string().max(128).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
};
/** Audit sequence numbers are PostgreSQL bigint. */
const MAX_SEQ = 2n ** 63n - 1n;
const RequestEnvelope = z.object({ request: RequestRow });
/** A widening change that waits for a second admin (or took effect unconfirmed): null when none was needed. */
const Change = GovernanceChangeRow.nullable();
/** A policy write: the policy as it is now (null: a create that waits for a second admin) and its change. */
const PolicyWrite = z.object({ policy: PolicyRow.nullable(), change: Change });
const PolicyEnvelope = z.object({ policy: PolicyRow });

export const routes = {
  health: defineRoute({
    method: 'GET',
    path: '/api/health',
    summary: 'Liveness, database reachability and whether the audit trail is protected from the app role',
    tag: 'system',
    auth: 'public',
    response: z.object({
      db: z.enum(['pglite', 'postgres']),
      uptimeSeconds: z.number(),
      audit: AuditHealth,
    }),
  }),
  healthLive: defineRoute({
    method: 'GET',
    path: '/api/health/live',
    summary: 'Liveness: the process answers; no dependency is asked (probes: livenessProbe)',
    tag: 'system',
    auth: 'public',
    response: Liveness,
  }),
  healthReady: defineRoute({
    method: 'GET',
    path: '/api/health/ready',
    summary: 'Readiness: the database answers, and Redis when configured; 503 NOT_READY naming what failed',
    tag: 'system',
    auth: 'public',
    response: Readiness,
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
    response: Me,
  }),

  listUsers: defineRoute({
    method: 'GET',
    path: '/api/users',
    summary: 'List users',
    tag: 'users',
    auth: { action: 'user:manage' },
    response: z.object({ users: z.array(UserRow) }),
  }),
  createUser: defineRoute({
    method: 'POST',
    path: '/api/users',
    summary: 'Create a password user with a role',
    tag: 'users',
    auth: { action: 'user:manage' },
    status: 201,
    body: CreateUser,
    // A user made approver or admin starts as a viewer until a second admin confirms the role (`change`).
    response: z.object({
      user: UserRow.pick({ id: true, email: true, name: true, role: true }),
      change: Change,
    }),
  }),
  setUserRole: defineRoute({
    method: 'PATCH',
    path: '/api/users/{id}',
    summary: "Change a user's role",
    tag: 'users',
    auth: { action: 'user:manage' },
    params: z.object({ id: z.string().min(1).max(128) }),
    body: z.object({ role: Role }).strict(),
    // A promotion to approver or admin waits for a second admin: `user.role` is the role in effect now.
    response: z.object({ user: z.object({ id: z.string(), role: Role }), change: Change }),
  }),
  listBreakGlassGrants: defineRoute({
    method: 'GET',
    path: '/api/break-glass/grants',
    summary: 'Break-glass grants: who may file emergency requests that run without votes',
    tag: 'users',
    auth: { action: 'user:manage' },
    response: z.object({ grants: z.array(BreakGlassGrantRow) }),
  }),
  createBreakGlassGrant: defineRoute({
    method: 'POST',
    path: '/api/break-glass/grants',
    summary: 'Grant a person break-glass (optional expiry; replaces their active grant; never yourself)',
    tag: 'users',
    auth: { action: 'user:manage' },
    status: 201,
    body: CreateBreakGlassGrant,
    response: z.object({ grant: BreakGlassGrantRow }),
  }),
  revokeBreakGlassGrant: defineRoute({
    method: 'POST',
    path: '/api/break-glass/grants/{id}/revoke',
    summary: 'Revoke a break-glass grant: emergency requests under it that were not sent yet are refused',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: IdParam,
    body: z.object({}).strict(),
    response: z.object({ grant: BreakGlassGrantRow }),
  }),
  myBreakGlass: defineRoute({
    method: 'GET',
    path: '/api/break-glass/mine',
    summary: 'Your active break-glass grant, if any (the request form offers an emergency only then)',
    tag: 'users',
    auth: 'session',
    response: z.object({ grant: BreakGlassGrantRow.nullable() }),
  }),
  listGovernanceChanges: defineRoute({
    method: 'GET',
    path: '/api/governance/changes',
    summary: 'Changes that widen who may approve: pending, unconfirmed, confirmed, rejected (newest first)',
    tag: 'users',
    auth: { action: 'user:manage' },
    query: z.object({ open: Bool.optional() }).strict(),
    response: z.object({ changes: z.array(GovernanceChangeRow) }),
  }),
  confirmGovernanceChange: defineRoute({
    method: 'POST',
    path: '/api/governance/changes/{id}/confirm',
    summary:
      'Confirm a change as a second admin (recent sign-in; never your own): a pending one takes effect',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: IdParam,
    body: DecideGovernanceChange,
    response: z.object({ change: GovernanceChangeRow }),
  }),
  rejectGovernanceChange: defineRoute({
    method: 'POST',
    path: '/api/governance/changes/{id}/reject',
    summary: 'Reject a pending change as a second admin: it never takes effect',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: IdParam,
    body: DecideGovernanceChange,
    response: z.object({ change: GovernanceChangeRow }),
  }),

  listServiceAccounts: defineRoute({
    method: 'GET',
    path: '/api/service-accounts',
    summary: 'Service accounts (automation identities that act through API tokens)',
    tag: 'users',
    auth: { action: 'user:manage' },
    response: z.object({ serviceAccounts: z.array(ServiceAccountRow) }),
  }),
  createServiceAccount: defineRoute({
    method: 'POST',
    path: '/api/service-accounts',
    summary: 'Create a service account with a role (a person must do it, not a token)',
    tag: 'users',
    auth: { action: 'user:manage' },
    status: 201,
    body: CreateServiceAccount,
    response: z.object({ serviceAccount: ServiceAccountRow }),
  }),
  listApiTokens: defineRoute({
    method: 'GET',
    path: '/api/service-accounts/{id}/tokens',
    summary: "A service account's API tokens (never their secrets)",
    tag: 'users',
    auth: { action: 'user:manage' },
    params: IdParam,
    response: z.object({ tokens: z.array(ApiTokenRow) }),
  }),
  createApiToken: defineRoute({
    method: 'POST',
    path: '/api/service-accounts/{id}/tokens',
    summary: 'Create an API token (`pyr_…`, returned once; use as `Authorization: Bearer`)',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: IdParam,
    status: 201,
    body: CreateApiToken,
    response: z.object({ token: z.string(), tokenId: Id, expiresAt: z.string() }),
  }),
  revokeApiToken: defineRoute({
    method: 'DELETE',
    path: '/api/tokens/{tokenId}',
    summary: 'Revoke an API token: refused from the next call on, its /ui sockets dropped',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: z.object({ tokenId: Id }),
    response: z.object({ token: ApiTokenRow }),
  }),
  setUserDisabled: defineRoute({
    method: 'POST',
    path: '/api/users/{id}/disable',
    summary: 'Disable a user (sessions revoked, live sockets closed at once) or enable them again',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: z.object({ id: z.string().min(1).max(128) }),
    body: SetUserDisabled,
    response: z.object({ user: z.object({ id: z.string(), disabled: z.boolean() }) }),
  }),
  setTemporaryPassword: defineRoute({
    method: 'POST',
    path: '/api/users/{id}/password',
    summary: 'Set a temporary password the user must change at the next sign-in (their sessions end)',
    tag: 'users',
    auth: { action: 'user:manage' },
    params: z.object({ id: z.string().min(1).max(128) }),
    body: SetTemporaryPassword,
    response: z.object({ user: z.object({ id: z.string(), mustChangePassword: z.literal(true) }) }),
  }),

  createJoinToken: defineRoute({
    method: 'POST',
    path: '/api/join-tokens',
    summary:
      'Create an agent join token: one-time by default, or reusable by a fleet (maxUses, null = unlimited), ' +
      'optionally bound to a host-name pattern (the clear token is returned once)',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    status: 201,
    body: CreateJoinToken,
    response: z.object({
      joinToken: z.object({
        id: Id,
        token: z.string(),
        expiresAt: z.string(),
        labels: Labels,
        /** The namespace declaration in force ({} while a loosening one waits for a second admin). */
        namespaceLabels: NamespaceLabels,
        maxUses: z.number().int().nullable(),
        hostPattern: z.string().nullable(),
      }),
      /** The governance change a loosening namespace declaration made (pending or unconfirmed), else null. */
      change: Change,
    }),
  }),
  listJoinTokens: defineRoute({
    method: 'GET',
    path: '/api/join-tokens',
    summary: 'Join tokens with their uses and the agents enrolled through each, newest first',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    response: z.object({ joinTokens: z.array(JoinTokenRow) }),
  }),
  revokeJoinToken: defineRoute({
    method: 'DELETE',
    path: '/api/join-tokens/{id}',
    summary: 'Revoke a join token: no agent enrols with it from now on (agents already enrolled stay)',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    params: IdParam,
    response: z.object({ joinToken: JoinTokenRow }),
  }),
  revokeJoinTokenAgents: defineRoute({
    method: 'POST',
    path: '/api/join-tokens/{id}/revoke-agents',
    summary: 'Revoke every agent enrolled through a join token: their connections drop now',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    params: IdParam,
    body: z.object({ reason: z.string().min(1).max(1024) }).strict(),
    response: z.object({ joinToken: JoinTokenRow, revokedAgentIds: z.array(Id) }),
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
    response: z.object({ agents: z.array(AgentRow) }),
  }),
  getAgent: defineRoute({
    method: 'GET',
    path: '/api/agents/{id}',
    summary: 'One agent',
    tag: 'agents',
    auth: { action: 'fleet:read' },
    params: IdParam,
    response: z.object({ agent: AgentRow }),
  }),
  revokeAgent: defineRoute({
    method: 'POST',
    path: '/api/agents/{id}/revoke',
    summary: 'Revoke an agent: its connection drops now and it is refused from then on',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    params: IdParam,
    body: z.object({ reason: z.string().min(1).max(1024) }).strict(),
    response: z.object({ agent: AgentRow }),
  }),
  setAgentNamespaceLabels: defineRoute({
    method: 'PUT',
    path: '/api/agents/{id}/namespace-labels',
    summary:
      'Declare which Kubernetes namespaces carry which policy labels for this agent’s processes (null: follow ' +
      'its join token); a declaration that loosens a policy for some process waits for a second admin',
    tag: 'agents',
    auth: { action: 'agent:manage' },
    params: IdParam,
    body: SetAgentNamespaceLabels,
    response: z.object({ agent: AgentRow, change: Change }),
  }),

  listHosts: defineRoute({
    method: 'GET',
    path: '/api/fleet/hosts',
    summary: 'Hosts with their agent and process count',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    query: z.object({ labels: LabelsQuery.optional(), includeRevoked: Bool.optional() }).strict(),
    response: z.object({ hosts: z.array(HostSummary) }),
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
    response: z.object({ processes: z.array(TargetProcess) }),
  }),
  previewSelector: defineRoute({
    method: 'POST',
    path: '/api/fleet/preview',
    summary: 'Processes a selector resolves to right now',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    body: Selector.extend({ limit: z.number().int().min(1).max(10000).optional() }).strict(),
    response: z.object({ count: z.number().int(), processes: z.array(TargetProcess) }),
  }),
  inspectProcess: defineRoute({
    method: 'POST',
    path: '/api/fleet/processes/inspect',
    summary:
      "Read one process's thread stacks or asyncio tasks through its agent (no code runs in it; no approval; audited)",
    tag: 'fleet',
    auth: { action: 'process:inspect' },
    body: InspectProcessBody,
    response: z.object({ inspection: InspectionView }),
  }),
  getInspection: defineRoute({
    method: 'GET',
    path: '/api/fleet/inspections/{id}',
    summary: 'One inspection: its state, and the stacks or tasks the agent read',
    tag: 'fleet',
    auth: { action: 'process:inspect' },
    params: IdParam,
    response: z.object({ inspection: InspectionView }),
  }),
  listScripts: defineRoute({
    method: 'GET',
    path: '/api/scripts',
    summary: 'Built-in script library',
    tag: 'requests',
    auth: { action: 'request:read' },
    response: z.object({ scripts: z.array(ScriptSummary) }),
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
        /** `after`: break-glass requests whose review afterwards is still open (the approvals page's queue). */
        review: z.enum(['after']).optional(),
        cursor: Id.optional(),
        limit: z.coerce.number().int().min(1).max(200).optional(),
      })
      .strict(),
    response: z.object({ requests: z.array(RequestRow), nextCursor: Id.nullable() }),
  }),
  createRequest: defineRoute({
    method: 'POST',
    path: '/api/requests',
    summary: 'Ask to run code or a library script on targets',
    tag: 'requests',
    auth: { action: 'request:create' },
    status: 201,
    body: CreateRequest,
    response: RequestEnvelope,
  }),
  getRequest: defineRoute({
    method: 'GET',
    path: '/api/requests/{id}',
    summary:
      'A request with reviews, executions (a preview of each output: outputPreview, outputDigest) and results',
    tag: 'requests',
    auth: { action: 'request:read' },
    params: IdParam,
    response: z.object({ request: RequestDetail }),
  }),
  /** One execution's whole stored output as a file (authorised like the request page). */
  downloadExecutionOutput: defineRoute({
    method: 'GET',
    path: '/api/requests/{id}/executions/{executionId}/output',
    summary: "Download one execution's whole stored output as text/plain",
    tag: 'requests',
    auth: { action: 'request:read' },
    params: z.object({ id: Id, executionId: Id }),
    produces: 'text/plain',
  }),
  updateRequest: defineRoute({
    method: 'PATCH',
    path: '/api/requests/{id}',
    summary: 'Edit a pending request (voids earlier approvals when code, params or targets change)',
    tag: 'requests',
    auth: { action: 'request:create' },
    params: IdParam,
    body: UpdateRequest,
    response: RequestEnvelope,
  }),
  cancelRequest: defineRoute({
    method: 'POST',
    path: '/api/requests/{id}/cancel',
    summary: 'Cancel a request',
    tag: 'requests',
    auth: { action: 'request:cancel' },
    params: IdParam,
    body: z.object({ reason: z.string().max(2000).optional() }).strict(),
    response: RequestEnvelope,
  }),
  closeAfterReview: defineRoute({
    method: 'POST',
    path: '/api/requests/{id}/after-review',
    summary: 'Close the review afterwards of a break-glass request (a second person: not its requester)',
    tag: 'requests',
    auth: { action: 'request:review' },
    params: IdParam,
    body: CloseAfterReview,
    response: RequestEnvelope,
  }),
  getRequestPreflight: defineRoute({
    method: 'GET',
    path: '/api/requests/{id}/preflight',
    summary:
      "Each target's pre-flight verdict, evaluated now (a selector: what it matches now): exited, remote debugging off, the agent's local policy, thread states",
    tag: 'requests',
    auth: { action: 'request:read' },
    params: IdParam,
    response: z.object({ preflight: PreflightReport }),
  }),
  getRequestRestore: defineRoute({
    method: 'GET',
    path: '/api/requests/{id}/restore',
    summary:
      'The restore a change that undoes itself carries: when each target restores itself, and what it said',
    tag: 'requests',
    auth: { action: 'request:read' },
    params: IdParam,
    response: z.object({ restore: RequestRestore }),
  }),
  restoreRequestNow: defineRoute({
    method: 'POST',
    path: '/api/requests/{id}/restore',
    summary:
      'Restore now: run the approved restore at once (no new vote; the requester, an approver or an admin)',
    tag: 'requests',
    auth: { action: 'request:restore' },
    params: IdParam,
    body: z.object({}).strict(),
    response: z.object({ restore: RequestRestore }),
  }),
  reviewRequest: defineRoute({
    method: 'POST',
    path: '/api/requests/{id}/reviews',
    summary: 'Approve or reject (needs a sign-in within the re-authentication window)',
    tag: 'requests',
    auth: { action: 'request:review' },
    params: IdParam,
    body: Review,
    response: RequestEnvelope,
  }),

  listPolicies: defineRoute({
    method: 'GET',
    path: '/api/policies',
    summary: 'Approval policies, highest priority first',
    tag: 'policies',
    auth: { action: 'policy:read' },
    response: z.object({ policies: z.array(PolicyRow) }),
  }),
  createPolicy: defineRoute({
    method: 'POST',
    path: '/api/policies',
    summary: 'Create a policy',
    tag: 'policies',
    auth: { action: 'policy:manage' },
    status: 201,
    body: PolicyInput,
    response: PolicyWrite,
  }),
  getPolicy: defineRoute({
    method: 'GET',
    path: '/api/policies/{id}',
    summary: 'One policy',
    tag: 'policies',
    auth: { action: 'policy:read' },
    params: IdParam,
    response: PolicyEnvelope,
  }),
  updatePolicy: defineRoute({
    method: 'PUT',
    path: '/api/policies/{id}',
    summary: "Replace a policy's rules",
    tag: 'policies',
    auth: { action: 'policy:manage' },
    params: IdParam,
    body: PolicyInput,
    response: PolicyWrite,
  }),
  deletePolicy: defineRoute({
    method: 'DELETE',
    path: '/api/policies/{id}',
    summary: 'Delete a policy (not the default)',
    tag: 'policies',
    auth: { action: 'policy:manage' },
    params: IdParam,
    // `deleted` is null while the deletion waits for a second admin (it would loosen some target's policy).
    response: z.object({ deleted: Id.nullable(), change: Change }),
  }),

  queryAudit: defineRoute({
    method: 'GET',
    path: '/api/audit',
    summary: 'Audit events, newest first, keyset-paginated',
    tag: 'audit',
    auth: { action: 'audit:read' },
    query: z
      .object({
        ...AuditFilter,
        text: z.string().max(256).optional(),
        cursor: z
          .string()
          .regex(/^\d{1,19}$/, 'cursor is an audit sequence number (the nextCursor of the previous page)')
          .refine((c) => BigInt(c) <= MAX_SEQ, 'cursor is past the largest sequence number (2^63-1)')
          .optional(),
        limit: z.coerce.number().int().min(1).max(500).optional(),
      })
      .strict(),
    response: z.object({ events: z.array(AuditEventRow), nextCursor: z.string().nullable() }),
  }),
  verifyAudit: defineRoute({
    method: 'GET',
    path: '/api/audit/verify',
    summary: 'Verify the hash chain; names the first broken event',
    tag: 'audit',
    auth: { action: 'audit:read' },
    response: AuditVerification,
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
        ...AuditFilter,
        /** The same free text as the explorer's: an export holds exactly the rows the filters show. */
        text: z.string().max(256).optional(),
      })
      .strict(),
  }),

  // ---- the dashboard's own reads (one call per page instead of N+1) --------------------------------------

  /**
   * Every host with its agent (status, last seen, version, labels) and its full Python-process snapshot. The
   * /api/fleet/* routes serve the scriptable, filterable lists; this one gives the fleet page all it shows.
   */
  uiFleet: defineRoute({
    method: 'GET',
    path: '/api/ui/fleet',
    summary: 'One page of processes (filtered on the server) with their hosts, and fleet totals (dashboard)',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    query: FleetQuery,
    response: FleetPage,
  }),
  /** The fleet's detail drawer: one process, its host, and the latest requests that targeted it. */
  uiFleetProcess: defineRoute({
    method: 'GET',
    path: '/api/ui/fleet/processes/{id}',
    summary: 'One process with its host and recent requests on it (dashboard)',
    tag: 'fleet',
    auth: { action: 'fleet:read' },
    params: IdParam,
    response: FleetProcessDetail,
  }),
  /** Display names for user ids: approvers see who asked and who voted (/api/users is the admin's list). */
  uiNames: defineRoute({
    method: 'POST',
    path: '/api/ui/names',
    summary: 'Display names and roles for user ids (dashboard)',
    tag: 'users',
    auth: { action: 'request:read' },
    maxBodyBytes: 64 * 1024,
    body: z.object({ ids: z.array(z.string().min(1).max(128)).max(500) }).strict(),
    response: z.object({ users: z.record(z.string(), z.object({ name: z.string(), role: Role })) }),
  }),
  /** The policy a request would fall under, before it is filed (the same resolution as at creation). */
  uiPolicyPreview: defineRoute({
    method: 'POST',
    path: '/api/ui/policy-preview',
    summary: 'The effective policy for a set of targets (dashboard, before filing a request)',
    tag: 'policies',
    auth: { action: 'policy:read' },
    maxBodyBytes: 256 * 1024,
    body: PolicyPreviewBody,
    response: PolicyPreview,
  }),

  /** The pre-flight verdicts of a draft request (the new-request form), before it is filed. */
  uiPreflight: defineRoute({
    method: 'POST',
    path: '/api/ui/preflight',
    summary: "Each target's pre-flight verdict for a draft request (dashboard, before filing)",
    tag: 'requests',
    auth: { action: 'request:read' },
    maxBodyBytes: 1024 * 1024,
    body: PreflightBody,
    response: z.object({ preflight: PreflightReport }),
  }),

  // ---- notifications (issue 13) ----
  listNotificationRules: defineRoute({
    method: 'GET',
    path: '/api/notifications/rules',
    summary: 'Notification rules (URLs masked, secrets never shown)',
    tag: 'notifications',
    auth: { action: 'notification:manage' },
    response: z.object({ rules: z.array(NotificationRuleRow) }),
  }),
  createNotificationRule: defineRoute({
    method: 'POST',
    path: '/api/notifications/rules',
    summary:
      'Create a rule sending events to a signed webhook or Slack; the signing secret is returned once (SSRF-guarded URL)',
    tag: 'notifications',
    auth: { action: 'notification:manage' },
    status: 201,
    maxBodyBytes: 16 * 1024,
    body: CreateNotificationRule,
    response: z.object({ rule: NotificationRuleRow, secret: z.string().nullable() }),
  }),
  updateNotificationRule: defineRoute({
    method: 'PATCH',
    path: '/api/notifications/rules/{id}',
    summary: 'Turn a notification rule on or off',
    tag: 'notifications',
    auth: { action: 'notification:manage' },
    params: IdParam,
    body: UpdateNotificationRule,
    response: z.object({ rule: NotificationRuleRow }),
  }),
  deleteNotificationRule: defineRoute({
    method: 'DELETE',
    path: '/api/notifications/rules/{id}',
    summary: 'Delete a notification rule and its delivery log',
    tag: 'notifications',
    auth: { action: 'notification:manage' },
    params: IdParam,
    response: z.object({ deleted: z.literal(true) }),
  }),
  listNotificationDeliveries: defineRoute({
    method: 'GET',
    path: '/api/notifications/rules/{id}/deliveries',
    summary: "A rule's delivery log, newest first: status, attempts, last error",
    tag: 'notifications',
    auth: { action: 'notification:manage' },
    params: IdParam,
    query: z
      .object({
        status: z.enum(['pending', 'delivered', 'failed']).optional(),
        limit: z.coerce.number().int().min(1).max(500).optional(),
      })
      .strict(),
    response: z.object({ deliveries: z.array(NotificationDeliveryRow) }),
  }),
};

export type RouteName = keyof typeof routes;
