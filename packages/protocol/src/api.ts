/**
 * The HTTP API's shapes, once: who may do what (roles, actions), what a request targets and how it rolls out,
 * the bodies that create and edit requests and policies, and every response as the browser receives it (JSON:
 * dates are ISO strings, audit sequence numbers decimal strings). The route table (routes.ts) names these; the
 * services parse their input with them; the database's JSON columns are parsed with them on read; the browser
 * takes its types from them. Browser-safe: zod only.
 */
import { z } from 'zod';
import {
  Id,
  IsoTime,
  JsonObject,
  Labels,
  MAX_CODE_BYTES,
  MAX_PARAMS_BYTES,
  jsonBytes,
  utf8Bytes,
} from './common';
import { StacksReport, TasksReport } from './inspect';
import { KubernetesLabelKey, KubernetesLabelValue, KubernetesPodFacts, PythonProcess } from './inventory';
import { JobOptions } from './options';
import {
  AfterReviewState,
  ExecutionState,
  InspectionState,
  RequestState,
  RestoreOutcome,
  RestoreRunState,
} from './states';

// ---- who may do what -------------------------------------------------------------------------------------

/** Roles of people, least to most powerful. The database CHECKs the same list. */
export const ROLES = ['viewer', 'operator', 'approver', 'admin'] as const;
export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export const ACTIONS = [
  'fleet:read',
  'request:read',
  'request:create',
  'request:review',
  'request:cancel',
  'audit:read',
  'audit:export',
  'agent:manage',
  'user:manage',
  'policy:read',
  'policy:manage',
  'process:inspect',
  'notification:manage',
  'request:restore',
] as const;
export type Action = (typeof ACTIONS)[number];

/**
 * Which role may do what. Every route checks this table; services re-check the rules that depend on the
 * record (own request, policy's approver roles). Viewers are auditors: they read everything, change nothing.
 * Exports are bulk copies of the trail, so only approvers and admins may take them. The dashboard hides what
 * this table forbids (the server is the authority).
 */
export const PERMISSIONS: Readonly<Record<Action, readonly Role[]>> = {
  'fleet:read': ['viewer', 'operator', 'approver', 'admin'],
  'request:read': ['viewer', 'operator', 'approver', 'admin'],
  'request:create': ['operator', 'admin'],
  'request:review': ['approver', 'admin'],
  'request:cancel': ['operator', 'admin'],
  'audit:read': ['viewer', 'operator', 'approver', 'admin'],
  'audit:export': ['approver', 'admin'],
  'agent:manage': ['admin'],
  'user:manage': ['admin'],
  'policy:read': ['viewer', 'operator', 'approver', 'admin'],
  'policy:manage': ['admin'],
  // Reading a process's stacks or asyncio tasks from outside runs no code in it: operators may, without an
  // approval (always audited). Viewers may not: stacks show what a service is doing, with file paths.
  'process:inspect': ['operator', 'approver', 'admin'],
  // Rules send request details off the box to a URL of the admin's choosing.
  'notification:manage': ['admin'],
  // "Restore now" of a change that undoes itself: part of what was approved, so no new vote. The service narrows
  // operators to their own requests (the requester); approvers and admins may restore any.
  'request:restore': ['operator', 'approver', 'admin'],
};

/** `POST /api/fleet/processes/inspect`: read one process's thread stacks or asyncio tasks through its agent. */
export const InspectProcessBody = z
  .object({
    agentId: z.string().min(1).max(64),
    pid: z.number().int().positive(),
    startTime: z.string().min(1).max(32),
    what: z.enum(['stacks', 'tasks']),
  })
  .strict();
export type InspectProcessBody = z.infer<typeof InspectProcessBody>;

/** One inspection as stored: `result` is the agent's report, parsed with its schema on read (null until then). */
export const InspectionView = z.object({
  id: z.string(),
  agentId: z.string(),
  pid: z.number().int(),
  startTime: z.string(),
  what: z.enum(['stacks', 'tasks']),
  requestedBy: z.string(),
  state: InspectionState,
  stacks: StacksReport.nullable(),
  tasks: TasksReport.nullable(),
  errorCode: z.string().nullable(),
  message: z.string().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
});
export type InspectionView = z.infer<typeof InspectionView>;

/** Whether `role` (any string: unknown roles may nothing) may perform `action`. */
export function can(role: string, action: Action): boolean {
  return isRole(role) && PERMISSIONS[action].includes(role);
}

/**
 * Whether to offer this person a vote on this request: pending, not their own, a reviewing role that the
 * request's policy names. The service checks all of it again (and the sign-in's freshness) on the vote.
 */
export function mayReview(
  user: { id: string; role: string },
  req: { requesterId: string; approverRoles: readonly string[]; state: string },
): boolean {
  return (
    can(user.role, 'request:review') &&
    req.state === 'pending' &&
    req.requesterId !== user.id &&
    req.approverRoles.includes(user.role)
  );
}

// ---- what a request targets -------------------------------------------------------------------------------

/** An RFC 1123 label: a namespace's or a container's name. */
const DnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'not a Kubernetes name (lower-case letters, digits and -)');
/** At most this many pod labels in one selector (all must match). */
export const MAX_POD_SELECTOR_LABELS = 16;

/**
 * Processes by the Kubernetes pod they run in, as their agent reports it (exact values; `labels` all must match).
 * A selector with pod terms never matches a host process (one without pod facts); `{}` matches every process whose
 * pod is known. These facts come from the agent, so they choose targets and never the policy, which host labels
 * (the join token's or an admin's) decide.
 */
export const PodMatch = z
  .object({
    namespace: DnsLabel.optional(),
    labels: z
      .record(KubernetesLabelKey, KubernetesLabelValue)
      .refine(
        (l) => Object.keys(l).length <= MAX_POD_SELECTOR_LABELS,
        `at most ${MAX_POD_SELECTOR_LABELS} pod labels`,
      )
      .optional(),
    /** The container's name in the pod spec. */
    container: DnsLabel.optional(),
    /** The pod's owning workload (Deployment, StatefulSet, DaemonSet, Job, CronJob, …); kind optional. */
    workload: z
      .object({
        kind: z
          .string()
          .regex(/^[A-Z][A-Za-z0-9]{0,62}$/, 'not a workload kind (e.g. Deployment)')
          .optional(),
        name: z
          .string()
          .min(1)
          .max(253)
          .regex(
            /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
            'not a Kubernetes object name',
          ),
      })
      .strict()
      .optional(),
  })
  .strict();
export type PodMatch = z.infer<typeof PodMatch>;

/** Which processes on the matching hosts (case-insensitive substrings; user exact; pod terms exact). */
export const ProcessMatch = z
  .object({
    cmdlineContains: z.string().max(256).optional(),
    user: z.string().max(256).optional(),
    exeContains: z.string().max(256).optional(),
    pod: PodMatch.optional(),
  })
  .strict();
export type ProcessMatch = z.infer<typeof ProcessMatch>;

/** Hosts by label (all must match) and processes on them: the live preview and a request's selector. */
export const Selector = z.object({ labels: Labels.default({}), process: ProcessMatch.optional() });
export type Selector = z.input<typeof Selector>;

export const ExplicitTarget = z
  .object({
    agentId: Id,
    pid: z.number().int().positive(),
    startTime: z.string().regex(/^\d+$/),
    tid: z.number().int().positive().optional(),
  })
  .strict();
export type ExplicitTarget = z.infer<typeof ExplicitTarget>;

/** Named processes, or a selector resolved to processes at dispatch time. Part of what approvers approve. */
export const Targets = z.discriminatedUnion('type', [
  z.object({ type: z.literal('processes'), processes: z.array(ExplicitTarget).min(1).max(1000) }).strict(),
  z.object({ type: z.literal('selector'), labels: Labels, process: ProcessMatch.default({}) }).strict(),
]);
export type Targets = z.infer<typeof Targets>;
export type TargetsInput = z.input<typeof Targets>;

/**
 * The most executions a request may keep in flight: as many targets as it may name explicitly. A wave is claimed
 * in one transaction and the rollout counted with aggregate queries, so sending 1,000 at once costs a few
 * statements rather than 2,000 transactions; the blast radius stays the operator's choice (default 1).
 */
export const MAX_ROLLOUT_CONCURRENCY = 1000;

export const Rollout = z
  .object({
    /** Executions in flight at once. */
    concurrency: z.number().int().min(1).max(MAX_ROLLOUT_CONCURRENCY).default(1),
    /** Failures after which the rest is cancelled. */
    maxFailures: z.number().int().min(1).max(10_000).default(1),
  })
  .strict();
export type Rollout = z.infer<typeof Rollout>;

export const RequestKind = z.enum(['library', 'custom']);
export type RequestKind = z.infer<typeof RequestKind>;

/** Counted in UTF-8 bytes, as the agent counts it (policy.maxCodeBytes defaults to the same MAX_CODE_BYTES). */
const Code = z
  .string()
  .min(1)
  .refine((c) => c.length <= MAX_CODE_BYTES && utf8Bytes(c) <= MAX_CODE_BYTES, {
    message: `code is larger than ${MAX_CODE_BYTES} bytes of UTF-8 (the agents' limit); shorten it`,
  });
const Params = JsonObject.refine((p) => jsonBytes(p) <= MAX_PARAMS_BYTES, 'params are too large');
const Reason = z.string().trim().min(3).max(2000);
const DEFAULT_OPTIONS: JobOptions = {
  inline: false,
  budgetSeconds: 30,
  pickupTimeoutSeconds: 10,
  backend: 'native',
};

/** POST /api/requests. A library request runs the library's source (the server fills it in when omitted). */
export const CreateRequest = z
  .object({
    kind: RequestKind,
    scriptId: z.string().min(1).max(128).nullable().optional(),
    code: Code.optional(),
    params: Params.default({}),
    targets: Targets,
    reason: Reason,
    rollout: Rollout.default({ concurrency: 1, maxFailures: 1 }),
    options: JobOptions.default(DEFAULT_OPTIONS),
    /**
     * Break-glass: run at once without votes, under the filer's break-glass grant; marked everywhere and queued
     * for a review afterwards. The reason is part of the content hash.
     */
    emergency: z.boolean().optional(),
    emergencyReason: z.string().trim().min(10).max(2000).optional(),
  })
  .strict()
  .refine((r) => !r.emergency || r.emergencyReason !== undefined, {
    message: 'an emergency request needs emergencyReason (10-2000 characters): what is on fire',
    path: ['emergencyReason'],
  })
  .refine((r) => r.emergency || r.emergencyReason === undefined, {
    message: 'emergencyReason is only for emergency requests',
    path: ['emergencyReason'],
  })
  .refine((r) => (r.kind === 'library') === Boolean(r.scriptId), {
    message: 'scriptId is required for library requests and only for them',
    path: ['scriptId'],
  })
  .refine((r) => r.kind === 'library' || r.code !== undefined, {
    message: 'custom requests need code',
    path: ['code'],
  });
export type CreateRequest = z.input<typeof CreateRequest>;

/** PATCH /api/requests/{id}: edit a pending request (a change of code, params or targets voids approvals). */
export const UpdateRequest = z
  .object({
    code: Code.optional(),
    params: Params.optional(),
    targets: Targets.optional(),
    reason: Reason.optional(),
    rollout: Rollout.optional(),
    options: JobOptions.optional(),
  })
  .strict();
export type UpdateRequest = z.input<typeof UpdateRequest>;

export const ReviewDecision = z.enum(['approve', 'reject']);
/** A vote. A rejection must say why (the requester needs to know what to change): `comment` is required. */
export const Review = z
  .object({ decision: ReviewDecision, comment: z.string().max(2000).optional() })
  .strict()
  .refine((r) => r.decision !== 'reject' || (r.comment ?? '').trim().length > 0, {
    path: ['comment'],
    message: 'a rejection needs a comment saying why',
  });
export type Review = z.infer<typeof Review>;

// ---- policies -----------------------------------------------------------------------------------------------

/**
 * What a request does, that a policy may match on besides host labels: custom code or library scripts, which
 * scripts, which risk levels. A field left out matches everything; `{}` matches every action.
 */
export const PolicyAction = z
  .object({
    kinds: z
      .array(z.enum(['library', 'custom']))
      .min(1)
      .max(2)
      .optional(),
    scripts: z.array(z.string().min(1).max(128)).min(1).max(100).optional(),
    risks: z
      .array(z.enum(['low', 'medium', 'high']))
      .min(1)
      .max(3)
      .optional(),
  })
  .strict();
export type PolicyAction = z.infer<typeof PolicyAction>;

/** POST /api/policies, PUT /api/policies/{id}: a policy's rules (defaults fill what is left out). */
export const PolicyInput = z
  .object({
    name: z.string().min(1).max(100),
    description: z.string().max(1000).nullable().optional(),
    matchLabels: Labels.default({}),
    matchAction: PolicyAction.default({}),
    priority: z.number().int().min(-100_000).max(100_000).default(0),
    requiredApprovals: z.number().int().min(0).max(10).default(1),
    approverRoles: z.array(Role).max(4).default(['approver', 'admin']),
    allowCustomCode: z.boolean().default(false),
    approvalValidMinutes: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 60)
      .default(60),
  })
  .strict()
  .refine((p) => p.requiredApprovals === 0 || p.approverRoles.length > 0, {
    message: 'a policy that needs approvals must name at least one approver role',
    path: ['approverRoles'],
  })
  // A role without request:review can never cast a vote: listing it would make a policy nobody can satisfy.
  .refine((p) => p.approverRoles.every((r) => can(r, 'request:review')), {
    message: `approver roles must be roles that may review requests (${PERMISSIONS['request:review'].join(', ')})`,
    path: ['approverRoles'],
  });
export type PolicyInput = z.input<typeof PolicyInput>;

// ---- other bodies -------------------------------------------------------------------------------------------

export const CreateUser = z
  .object({
    email: z.email().max(320),
    name: z.string().min(1).max(200),
    password: z.string().min(12).max(256),
    role: Role,
  })
  .strict();
export type CreateUser = z.infer<typeof CreateUser>;

/** POST /api/users/{id}/disable: disable (sessions revoked, sockets closed) or enable again. */
export const SetUserDisabled = z
  .object({ disabled: z.boolean(), reason: z.string().trim().min(3).max(500).optional() })
  .strict()
  .refine((b) => !b.disabled || b.reason !== undefined, {
    message: 'say why the user is disabled (reason, 3-500 characters)',
    path: ['reason'],
  });
export type SetUserDisabled = z.infer<typeof SetUserDisabled>;

/** POST /api/users/{id}/password: a temporary password the user must change at the next sign-in. */
export const SetTemporaryPassword = z.object({ password: z.string().min(12).max(256) }).strict();
export type SetTemporaryPassword = z.infer<typeof SetTemporaryPassword>;

/** Longest life of a one-time token (a person enrols one host with it) and of a reusable one (a fleet's). */
export const JOIN_TOKEN_ONE_TIME_MAX_MINUTES = 7 * 24 * 60;
export const JOIN_TOKEN_REUSABLE_MAX_MINUTES = 365 * 24 * 60;
/** Defaults: an hour for a one-time token, 30 days for a reusable one. */
export const JOIN_TOKEN_DEFAULT_MINUTES = { oneTime: 60, reusable: 30 * 24 * 60 } as const;
export const JOIN_TOKEN_MAX_USES = 100_000;
/** Every join token starts with this, so a token is recognisable in a log and never begins with a dash (a CLI
 * would read `--token -abc` as an option). */
export const JOIN_TOKEN_PREFIX = 'pyrjt_';

/**
 * A host-name glob: `*` any run of characters (dots included), `?` one character, anchored at both ends and
 * case-insensitive (host names are). Host-name characters only, and at least one that is not a wildcard: a
 * pattern that matches every host is no pattern (leave it out).
 */
export const HostPattern = z
  .string()
  .trim()
  .min(1)
  .max(255)
  .regex(
    /^[A-Za-z0-9.*?_-]+$/,
    'host-name characters (letters, digits, . _ -) and the wildcards * and ? only',
  )
  .refine((p) => /[^*?]/.test(p), 'a pattern of wildcards only matches every host: leave hostPattern out');

/** Whether a reported host name matches a HostPattern (see there). */
export function hostMatches(pattern: string, hostname: string): boolean {
  const re = [...pattern]
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}-]/g, '\\$&')))
    .join('');
  return new RegExp(`^${re}$`, 'is').test(hostname);
}

/** At most this many namespaces in one declaration, and this many policy labels per namespace. */
export const MAX_NAMESPACE_DECLARATIONS = 64;
export const MAX_NAMESPACE_LABELS = 8;

/**
 * Which Kubernetes namespaces carry which policy labels (issue 14 item 3), declared by an admin on a join token
 * (at mint) or per agent (overriding the token's): `{ payments: { env: 'prod' }, sandbox: { env: 'dev' } }`.
 * A process's policy labels are its host's labels plus the labels declared for the namespace its agent reports
 * it in (the declaration wins on a key both name: it is the more specific); a namespace nobody declared adds
 * nothing, so an agent inventing pod facts gains nothing. Label keys and values follow the host labels' syntax.
 */
export const NamespaceLabels = z
  .record(
    DnsLabel,
    Labels.refine((l) => Object.keys(l).length >= 1 && Object.keys(l).length <= MAX_NAMESPACE_LABELS, {
      message: `each namespace declares 1 to ${MAX_NAMESPACE_LABELS} labels`,
    }),
  )
  .refine((n) => Object.keys(n).length <= MAX_NAMESPACE_DECLARATIONS, {
    message: `at most ${MAX_NAMESPACE_DECLARATIONS} namespaces`,
  });
export type NamespaceLabels = z.infer<typeof NamespaceLabels>;

/** PUT /api/agents/{id}/namespace-labels: the agent's own declaration, or null to follow its join token's. */
export const SetAgentNamespaceLabels = z.object({ namespaceLabels: NamespaceLabels.nullable() }).strict();
export type SetAgentNamespaceLabels = z.infer<typeof SetAgentNamespaceLabels>;

/**
 * POST /api/join-tokens. `maxUses`: enrolments allowed, 1 (the default: one host) up to JOIN_TOKEN_MAX_USES, or
 * null for unlimited (then a hostPattern or a short expiry is what bounds a leak). `ttlMinutes`: a one-time token
 * lives at most 7 days, a reusable one at most 365.
 */
export const CreateJoinToken = z
  .object({
    labels: Labels.optional(),
    /** Policy labels per namespace for the processes of the agents it enrols (see NamespaceLabels). */
    namespaceLabels: NamespaceLabels.optional(),
    ttlMinutes: z.number().int().min(1).max(JOIN_TOKEN_REUSABLE_MAX_MINUTES).optional(),
    maxUses: z.number().int().min(1).max(JOIN_TOKEN_MAX_USES).nullable().optional(),
    hostPattern: HostPattern.optional(),
    note: z.string().max(500).optional(),
  })
  .strict()
  .refine((b) => isReusable(b) || (b.ttlMinutes ?? 0) <= JOIN_TOKEN_ONE_TIME_MAX_MINUTES, {
    message: `a one-time token lives at most ${JOIN_TOKEN_ONE_TIME_MAX_MINUTES} minutes (7 days); give maxUses for a longer-lived fleet token`,
    path: ['ttlMinutes'],
  });
export type CreateJoinToken = z.infer<typeof CreateJoinToken>;

/** A token more than one host may enrol with (maxUses above 1, or unlimited). */
export function isReusable(b: { maxUses?: number | null }): boolean {
  return b.maxUses === null || (b.maxUses !== undefined && b.maxUses > 1);
}

// ---- service accounts and API tokens ------------------------------------------------------------------------

/** Every API token starts with this (secret scanners recognise it; a CLI never reads it as an option). */
export const API_TOKEN_PREFIX = 'pyr_';
export const DEFAULT_TOKEN_TTL_DAYS = 90;
export const MAX_TOKEN_TTL_DAYS = 365;

/** POST /api/service-accounts. The owner (default: the admin creating it) counts as requester for four-eyes. */
export const CreateServiceAccount = z
  .object({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lowercase letters, digits, dot, dash and underscore'),
    role: Role,
    ownerId: z.string().min(1).max(128).optional(),
    description: z.string().max(500).optional(),
  })
  .strict();
export type CreateServiceAccount = z.infer<typeof CreateServiceAccount>;

/** POST /api/service-accounts/{id}/tokens. */
export const CreateApiToken = z
  .object({
    ttlDays: z.number().int().min(1).max(MAX_TOKEN_TTL_DAYS).optional(),
    note: z.string().max(500).optional(),
  })
  .strict();
export type CreateApiToken = z.infer<typeof CreateApiToken>;

/** POST /api/ui/policy-preview: which policy a request on these targets would fall under. */
export const PolicyPreviewBody = z
  .object({
    targets: Targets,
    kind: RequestKind.optional(),
    /** The library script, for policies that match on the action (and whether it may run unapproved). */
    scriptId: z.string().min(1).max(128).optional(),
  })
  .strict();

/**
 * POST /api/ui/preflight: the pre-flight verdicts of a draft (the new-request form's panel), the same evaluation
 * as at filing (where a request whose every target is doomed is refused ALL_TARGETS_DOOMED).
 */
export const PreflightBody = z
  .object({
    targets: Targets,
    kind: RequestKind,
    scriptId: z.string().min(1).max(128).nullable().optional(),
    code: Code.optional(),
  })
  .strict()
  .refine((r) => (r.kind === 'library') === Boolean(r.scriptId), {
    message: 'scriptId is required for library requests and only for them',
    path: ['scriptId'],
  });

// ---- responses (JSON as the browser receives it) -----------------------------------------------------------

const Time = IsoTime;

export const UserRow = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
  role: Role,
  banned: z.boolean().nullable(),
  createdAt: Time,
});
export type UserRow = z.infer<typeof UserRow>;

/**
 * An agent whose oldest undelivered report is older than this is flagged as backlogged (fleet API and view): a
 * healthy agent delivers within seconds, so minutes mean its reports are not getting through.
 */
export const OUTBOX_BACKLOG_SECONDS = 120;

/** Whether an agent's outbox counts as a backlog (one rule for the API and the dashboard). */
export function isBacklogged(agent: { outboxDepth: number; outboxOldestAgeSeconds: number | null }): boolean {
  return (
    agent.outboxDepth > 0 &&
    agent.outboxOldestAgeSeconds !== null &&
    agent.outboxOldestAgeSeconds >= OUTBOX_BACKLOG_SECONDS
  );
}

export const AgentRow = z.object({
  id: Id,
  name: z.string(),
  /** The labels policies and selectors match: set by the join token (or an admin), never by the agent. */
  labels: Labels,
  /** What the agent reports about itself: shown as "reported", never matched by a policy. */
  reportedLabels: Labels.default({}),
  /** The admin's per-agent namespace declaration (null: the join token's applies). */
  namespaceLabels: NamespaceLabels.nullable().default(null),
  /** The declaration in force for its processes: its own, else its join token's. */
  effectiveNamespaceLabels: NamespaceLabels.default({}),
  /**
   * Why that declaration is not trusted (its control-plane signature does not verify: changed outside the control
   * plane, or written before declarations were signed), else null. While set, none of the agent's processes in a
   * namespace is priced (filing POLICY_DENIED, dispatch refused) until an admin declares again.
   */
  namespaceLabelsUntrusted: z.string().nullable().default(null),
  version: z.string(),
  status: z.enum(['online', 'offline']),
  lastSeenAt: Time.nullable(),
  connectedAt: Time.nullable(),
  /** Reports waiting in the agent's durable outbox at its last heartbeat. */
  outboxDepth: z.number().int(),
  /** Age of the oldest of them (null: none waiting, or an agent too old to say). */
  outboxOldestAgeSeconds: z.number().int().nullable(),
  /** The oldest waiting report is older than OUTBOX_BACKLOG_SECONDS: delivery is stuck, not just busy. */
  backlog: z.boolean(),
  revokedAt: Time.nullable(),
  revokedReason: z.string().nullable(),
  enrolledAt: Time,
  /** Whether the agent holds a connection to the replica that answered. */
  connectedHere: z.boolean().optional(),
});
export type AgentRow = z.infer<typeof AgentRow>;

/** A process a request can target, with what a person needs to recognise it. */
export const TargetProcess = z.object({
  agentId: Id,
  hostId: Id,
  hostname: z.string(),
  labels: Labels,
  pid: z.number().int(),
  startTime: z.string(),
  user: z.string().nullable(),
  exe: z.string(),
  cmdline: z.array(z.string()),
  pythonVersion: z.string().nullable(),
  remoteDebugEnabled: z.boolean().nullable(),
  /** The pod the process runs in, when its agent could learn it (shown and selected on; never policy). */
  pod: KubernetesPodFacts.nullable().optional(),
});
export type TargetProcess = z.infer<typeof TargetProcess>;

export const HostSummary = z.object({
  id: Id,
  agentId: Id,
  hostname: z.string(),
  os: z.string(),
  kernel: z.string(),
  arch: z.string(),
  scannedAt: Time,
  agent: z.object({
    id: Id,
    name: z.string(),
    labels: Labels,
    status: z.string(),
    lastSeenAt: Time.nullable(),
    revokedAt: Time.nullable(),
  }),
  processCount: z.number().int(),
});
export type HostSummary = z.infer<typeof HostSummary>;

/** One process of the dashboard's fleet view: the engine's facts as last reported. */
export const FleetProcess = PythonProcess.extend({
  id: Id,
  cwd: z.string().nullable(),
  container: z.string().nullable(),
  inspectError: z.string().nullable(),
  seenAt: Time,
});
export type FleetProcess = z.infer<typeof FleetProcess>;

export const FleetHost = z.object({
  id: Id,
  hostname: z.string(),
  os: z.string(),
  kernel: z.string(),
  arch: z.string(),
  scannedAt: Time,
  agent: AgentRow.pick({
    id: true,
    name: true,
    labels: true,
    status: true,
    lastSeenAt: true,
    version: true,
    revokedAt: true,
    enrolledAt: true,
    connectedHere: true,
    outboxDepth: true,
    outboxOldestAgeSeconds: true,
    backlog: true,
  }),
  processes: z.array(FleetProcess),
});
export type FleetHost = z.infer<typeof FleetHost>;

/** One page of the fleet view: hosts holding the page's processes (in host, pid order) and fleet-wide totals. */
export const FleetPage = z.object({
  hosts: z.array(FleetHost),
  /** Processes matching the filters: `total` of them, this page is [offset, offset + limit). */
  page: z.object({ offset: z.number().int(), limit: z.number().int(), total: z.number().int() }),
  /** The whole fleet, whatever the filters: for the header line. */
  totals: z.object({ hosts: z.number().int(), online: z.number().int(), processes: z.number().int() }),
  /** Every `key=value` label of the fleet's agents, sorted (the label filter's choices). */
  labels: z.array(z.string()),
  /** Every Kubernetes namespace the fleet's processes report, sorted (the namespace filter's choices). */
  namespaces: z.array(z.string()),
  /** Every owning workload as `namespace/Kind/name`, sorted (the workload filter's choices). */
  workloads: z.array(z.string()),
});
export type FleetPage = z.infer<typeof FleetPage>;

/** A request that ran (or is to run) on one process, newest first: the fleet drawer's "recent requests". */
export const ProcessRequestRow = z.object({
  requestId: Id,
  kind: z.string(),
  scriptId: z.string().nullable(),
  reason: z.string(),
  requestState: RequestState,
  executionState: ExecutionState,
  queuedAt: Time,
  finishedAt: Time.nullable(),
});
export type ProcessRequestRow = z.infer<typeof ProcessRequestRow>;

/** One process with its host and the requests on it (the fleet's detail drawer). */
export const FleetProcessDetail = z.object({
  host: FleetHost.omit({ processes: true }),
  process: FleetProcess,
  recentRequests: z.array(ProcessRequestRow),
});
export type FleetProcessDetail = z.infer<typeof FleetProcessDetail>;

/** The JSON Schema (2020-12) of a library script's parameters, as far as the dashboard's form reads it. */
export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  additionalProperties?: boolean | JsonSchema;
}
const JsonSchemaObject = z.custom<JsonSchema>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  'expected a JSON Schema object',
);

export const ScriptSummary = z.object({
  id: z.string(),
  version: z.number().int(),
  title: z.string(),
  description: z.string(),
  risk: z.enum(['low', 'medium', 'high']),
  readOnly: z.boolean(),
  /** What it returns may hold secrets or personal data (command lines, environment, cache contents). */
  sensitive: z.boolean(),
  /**
   * How its change is undone: `nothing` (read-only: nothing to undo), `auto-restore` (the target restores the
   * previous state itself after the duration; the approval covers the restore), `irreversible`.
   */
  undo: z.enum(['nothing', 'auto-restore', 'irreversible']),
  /** Whether what it does can be undone (nothing to undo, or restored by itself): `undo` is not `irreversible`. */
  reversible: z.boolean(),
  inline: z.boolean(),
  paramsSchema: JsonSchemaObject,
  source: z.string(),
});
export type ScriptSummary = z.infer<typeof ScriptSummary>;

export const PolicyRow = z.object({
  id: Id,
  name: z.string(),
  description: z.string().nullable(),
  matchLabels: Labels,
  matchAction: PolicyAction,
  priority: z.number().int(),
  requiredApprovals: z.number().int(),
  approverRoles: z.array(Role),
  allowCustomCode: z.boolean(),
  approvalValidMinutes: z.number().int(),
});
export type PolicyRow = z.infer<typeof PolicyRow>;

// ---- governance (second-admin confirmation) ----------------------------------------------------------------

export const GOVERNANCE_CHANGE_KINDS = [
  'user.create',
  'user.role',
  'policy.create',
  'policy.update',
  'policy.delete',
  'namespace_labels.set',
] as const;
export const GovernanceChangeKind = z.enum(GOVERNANCE_CHANGE_KINDS);
export type GovernanceChangeKind = z.infer<typeof GovernanceChangeKind>;

/**
 * A change that widens who may approve: `pending` (not applied; a second admin must confirm), `unconfirmed`
 * (applied where no second admin existed; the requests it affects are flagged), `confirmed`, `rejected`.
 */
export const GovernanceChangeState = z.enum(['pending', 'unconfirmed', 'confirmed', 'rejected']);
export type GovernanceChangeState = z.infer<typeof GovernanceChangeState>;

export const GovernanceChangeRow = z.object({
  id: Id,
  kind: GovernanceChangeKind,
  subjectType: z.enum(['user', 'policy', 'join_token', 'agent']),
  subjectId: z.string(),
  data: z.record(z.string(), z.unknown()),
  /** Why it counts as widening, for the admin who confirms it. */
  reasons: z.array(z.string()),
  state: GovernanceChangeState,
  requestedById: z.string(),
  createdAt: IsoTime,
  decidedById: z.string().nullable(),
  decidedAt: IsoTime.nullable(),
  decisionComment: z.string().nullable(),
});
export type GovernanceChangeRow = z.infer<typeof GovernanceChangeRow>;

// ---- break-glass --------------------------------------------------------------------------------------------

/** POST /api/break-glass/grants: a person may file emergency requests (until `expiresAt`, or until revoked). */
export const CreateBreakGlassGrant = z
  .object({
    userId: z.string().min(1).max(128),
    reason: z.string().trim().min(3).max(500),
    expiresAt: IsoTime.optional(),
  })
  .strict();
export type CreateBreakGlassGrant = z.infer<typeof CreateBreakGlassGrant>;

export const BreakGlassGrantRow = z.object({
  id: Id,
  userId: z.string(),
  grantedById: z.string(),
  reason: z.string(),
  createdAt: IsoTime,
  expiresAt: IsoTime.nullable(),
  revokedAt: IsoTime.nullable(),
  revokedById: z.string().nullable(),
  status: z.enum(['active', 'expired', 'revoked']),
});
export type BreakGlassGrantRow = z.infer<typeof BreakGlassGrantRow>;

/** POST /api/requests/{id}/after-review: a second person closes a break-glass request's review afterwards. */
export const CloseAfterReview = z.object({ comment: z.string().trim().min(3).max(2000) }).strict();
export type CloseAfterReview = z.infer<typeof CloseAfterReview>;

/** POST /api/governance/changes/{id}/confirm | /reject. */
export const DecideGovernanceChange = z.object({ comment: z.string().trim().max(2000).optional() }).strict();
export type DecideGovernanceChange = z.infer<typeof DecideGovernanceChange>;

export const RequestRow = z.object({
  id: Id,
  kind: RequestKind,
  scriptId: z.string().nullable(),
  code: z.string(),
  params: JsonObject,
  targets: Targets,
  rollout: Rollout,
  options: JobOptions,
  contentHash: z.string(),
  revision: z.number().int(),
  reason: z.string(),
  state: RequestState,
  requiredApprovals: z.number().int(),
  approverRoles: z.array(Role),
  approvalValidMinutes: z.number().int(),
  policyId: z.string().nullable(),
  requesterId: z.string(),
  createdAt: Time,
  updatedAt: Time,
  approvedAt: Time.nullable(),
  approvalExpiresAt: Time.nullable(),
  dispatchedAt: Time.nullable(),
  /** A cancel asked for while executions ran: it ends `cancelled` once the agents reported them stopped. */
  cancelRequestedAt: Time.nullable(),
  completedAt: Time.nullable(),
  /**
   * The request rests on a governance change no second admin confirmed (filed under an unconfirmed policy, or
   * approved by someone whose approver/admin role is unconfirmed): computed on reads (list and detail).
   */
  unconfirmedGovernance: z.boolean().optional(),
  /** Break-glass: ran without votes under `breakGlassGrantId`; `afterReview` open until a second person closes it. */
  emergency: z.boolean(),
  emergencyReason: z.string().nullable(),
  breakGlassGrantId: z.string().nullable(),
  afterReview: AfterReviewState.nullable(),
  afterReviewById: z.string().nullable(),
  afterReviewAt: Time.nullable(),
  afterReviewComment: z.string().nullable(),
});
export type RequestRow = z.infer<typeof RequestRow>;

export const ReviewRow = z.object({
  id: Id,
  reviewerId: z.string(),
  decision: ReviewDecision,
  comment: z.string().nullable(),
  contentHash: z.string(),
  createdAt: Time,
});
export type ReviewRow = z.infer<typeof ReviewRow>;

export const ExecutionSummary = z.object({
  id: Id,
  agentId: Id,
  pid: z.number().int(),
  startTime: z.string(),
  jobId: Id,
  state: ExecutionState,
  errorCode: z.string().nullable(),
});
export type ExecutionSummary = z.infer<typeof ExecutionSummary>;

/** One execution with its output, result and error: the request page. */
export const ExecutionDetail = ExecutionSummary.extend({
  /** The last agent report applied to it (0: none yet); pushed events up to this one are already in here. */
  seq: z.number().int().nonnegative(),
  /**
   * The stored output (safe text), at most its first OUTPUT_PREVIEW_BYTES (results.ts) bytes of UTF-8, cut on a
   * code point: the whole of it is the download's (`GET /api/requests/{id}/executions/{executionId}/output`).
   */
  output: z.string(),
  /**
   * `output` is a preview: the stored output goes on past it (fetch the download for the rest). False: `output`
   * is the whole stored output. Not a cut of what the target printed: that is `outputDroppedBytes`.
   */
  outputPreview: z.boolean(),
  /**
   * sha256 (hex) of the UTF-8 of the WHOLE stored output (the safe text, not the decoded bytes the download
   * sends): equal digests, byte-identical outputs. Kept by the database on every write of the output.
   */
  outputDigest: z.string().regex(/^[0-9a-f]{64}$/),
  /** Bytes of the whole stored output as the control plane counted them (markers of a cut not included). */
  outputBytes: z.number().int(),
  /**
   * Bytes of output that were cut (the 1 MiB cap in the target, the agent fitting one message, our own cap):
   * the stored output then ends with the cut's marker. Null: nothing was cut, or it was cut uncounted.
   */
  outputDroppedBytes: z.number().int().nonnegative().nullable(),
  /**
   * The target process as the inventory last saw it (to name it as the fleet does: its script or module), null
   * once it left the inventory.
   */
  process: z
    .object({
      exe: z.string(),
      cmdline: z.array(z.string()),
      inContainer: z.boolean(),
      container: z.string().nullable(),
    })
    .nullable(),
  result: z.unknown(),
  errorMessage: z.string().nullable(),
  error: z
    .object({ type: z.string().optional(), message: z.string().optional(), traceback: z.string().optional() })
    .nullable(),
  thread: z.unknown(),
  /**
   * Waiting on the agent behind another job for the same target process (the agent runs one at a time):
   * that job, the request it belongs to (null when it is not one this control plane knows), and how many
   * jobs are ahead. Null once it started or ended.
   */
  queuedBehind: z
    .object({ jobId: Id, requestId: Id.nullable(), ahead: z.number().int().positive() })
    .nullable(),
  /**
   * The code could not be interrupted (blocked in C past its budget, or after a cancel): the thread inside
   * the target that may still be running it. Null when the code stopped.
   */
  leftoverThread: z.object({ tid: z.number().int(), name: z.string().nullable().optional() }).nullable(),
  queuedAt: Time,
  sentAt: Time.nullable(),
  stagedAt: Time.nullable(),
  pickedUpAt: Time.nullable(),
  finishedAt: Time.nullable(),
});
export type ExecutionDetail = z.infer<typeof ExecutionDetail>;

export const RequestDetail = RequestRow.extend({
  reviews: z.array(ReviewRow),
  /** Approvals cast on the current content hash (the only ones that count). */
  approvals: z.number().int(),
  /** Reviews cast on an earlier revision, voided by an edit. */
  voidedReviews: z.number().int(),
  executions: z.array(ExecutionDetail),
  /** How many of its executions are in each state, every state present (0 where none). */
  executionCounts: z.record(ExecutionState, z.number().int().nonnegative()),
});
export type RequestDetail = z.infer<typeof RequestDetail>;

// ---- changes that undo themselves ------------------------------------------------------------------------

/** What one restore touched: a logger or handler put back, or left alone because someone else changed it. */
export const RestoredLevel = z.object({
  kind: z.enum(['logger', 'handler']),
  name: z.string(),
  /** The level put back, and the one we had set (when restored). */
  restored: z.string().optional(),
  from: z.string().optional(),
  /** The level found instead of ours, left alone (when changed by someone else). */
  leftAt: z.string().optional(),
  expected: z.string().optional(),
  reason: z.string().optional(),
});
export type RestoredLevel = z.infer<typeof RestoredLevel>;

/** One follow-up of one target: the read at expiry (`check`) or "Restore now" (`now`). */
export const RestoreRunRow = z.object({
  id: z.string(),
  executionId: z.string(),
  agentId: z.string(),
  pid: z.number().int(),
  mode: z.enum(['check', 'now']),
  state: RestoreRunState,
  dueAt: Time,
  outcome: RestoreOutcome.nullable(),
  /** The target's restore entry's state (restored, superseded, pending, unknown) and what it touched. */
  levels: z.array(RestoredLevel),
  /** The logger's level when the run read it. */
  current: z.string().nullable(),
  errorCode: z.string().nullable(),
  message: z.string().nullable(),
  requestedBy: z.string(),
  finishedAt: Time.nullable(),
});
export type RestoreRunRow = z.infer<typeof RestoreRunRow>;

/** `GET /api/requests/{id}/restore`: the restore a request's change carries, per target. */
export const RequestRestore = z.object({
  /** The request's change undoes itself (a library script with a duration). */
  autoRestore: z.boolean(),
  durationSeconds: z.number().int().nullable(),
  /** Per succeeded target: when its process restores itself (the change's end as the control plane saw it). */
  targets: z.array(
    z.object({
      executionId: z.string(),
      agentId: z.string(),
      pid: z.number().int(),
      restoreAt: Time,
    }),
  ),
  runs: z.array(RestoreRunRow),
  /** Someone may still ask for "Restore now": some target's change not yet due and no restore-now asked. */
  restoreNowOpen: z.boolean(),
});
export type RequestRestore = z.infer<typeof RequestRestore>;

export const AuditEventRow = z.object({
  seq: z.string(),
  at: Time,
  /** `service`: a service account acting through an API token (the token's id is in `data.tokenId`). */
  actorType: z.enum(['user', 'agent', 'system', 'service']),
  actorId: z.string().nullable(),
  actorName: z.string().nullable(),
  action: z.string(),
  subjectType: z.string().nullable(),
  subjectId: z.string().nullable(),
  /** The subject's current name (a user, agent, policy, request...), resolved when read; null if gone. */
  subjectName: z.string().nullable(),
  data: z.unknown(),
  prevHash: z.string(),
  hash: z.string(),
});
export type AuditEventRow = z.infer<typeof AuditEventRow>;

export const ServiceAccountRow = z.object({
  id: Id,
  name: z.string(),
  role: Role,
  ownerId: z.string(),
  description: z.string().nullable(),
  createdById: z.string(),
  createdAt: Time,
  /** Tokens neither revoked nor expired. */
  activeTokens: z.number().int(),
  lastUsedAt: Time.nullable(),
});
export type ServiceAccountRow = z.infer<typeof ServiceAccountRow>;

/** A token as listed: never its secret (that is shown once, at creation). */
export const ApiTokenRow = z.object({
  id: Id,
  /** How the token starts (`pyr_<id>_`): enough to recognise it, nothing to use it with. */
  prefix: z.string(),
  serviceAccountId: Id,
  note: z.string().nullable(),
  createdById: z.string(),
  createdAt: Time,
  expiresAt: Time,
  revokedAt: Time.nullable(),
  lastUsedAt: Time.nullable(),
  status: z.enum(['active', 'expired', 'revoked']),
});
export type ApiTokenRow = z.infer<typeof ApiTokenRow>;

/** An agent enrolled through a join token, as the token list shows it. */
export const JoinTokenAgent = z.object({
  id: Id,
  name: z.string(),
  status: z.enum(['online', 'offline']),
  enrolledAt: Time,
  revokedAt: Time.nullable(),
  revokedReason: z.string().nullable(),
});
export type JoinTokenAgent = z.infer<typeof JoinTokenAgent>;

/** A join token for review (GET /api/join-tokens): never its secret, always what it enrolled. */
export const JoinTokenRow = z.object({
  id: Id,
  note: z.string().nullable(),
  labels: Labels,
  /** Policy labels per namespace for its agents' processes (agents may override it). */
  namespaceLabels: NamespaceLabels.default({}),
  /** A declaration given at mint that waits for a second admin (not in force yet), else null. */
  pendingNamespaceLabels: NamespaceLabels.nullable().default(null),
  /** null: unlimited. */
  maxUses: z.number().int().nullable(),
  useCount: z.number().int(),
  hostPattern: z.string().nullable(),
  createdById: z.string(),
  createdAt: Time,
  expiresAt: Time,
  lastUsedAt: Time.nullable(),
  revokedAt: Time.nullable(),
  /** Refusals (expired, revoked, used up, host outside the pattern) not yet carried by an audit event. */
  refusedCount: z.number().int(),
  status: z.enum(['active', 'expired', 'revoked', 'used_up']),
  /** Every agent enrolled through it, newest first, revoked ones included. */
  agents: z.array(JoinTokenAgent),
});
export type JoinTokenRow = z.infer<typeof JoinTokenRow>;

export const PolicyPreview = z.object({
  matched: z.number().int(),
  policy: z.object({ id: Id, name: z.string(), description: z.string().nullable() }).nullable(),
  policies: z.array(z.object({ id: Id, name: z.string(), description: z.string().nullable() })),
  requiredApprovals: z.number().int(),
  approverRoles: z.array(Role),
  allowCustomCode: z.boolean(),
  approvalValidMinutes: z.number().int(),
  customDenied: z.boolean(),
});
export type PolicyPreview = z.infer<typeof PolicyPreview>;

export const Me = z.object({
  user: z.object({ id: z.string(), email: z.string(), name: z.string(), role: Role }),
  /** An admin set a temporary password: every other call is refused until the user changes it. */
  mustChangePassword: z.boolean().default(false),
  authenticatedAt: Time,
  freshUntil: Time,
  fresh: z.boolean(),
  /** How a stale sign-in is renewed before a vote: the password, or a fresh sign-in at the SSO provider. */
  reauth: z.enum(['password', 'sso']).default('password'),
});
export type Me = z.infer<typeof Me>;

/** What the sign-in page offers: password (unless switched off) and the SSO provider, if any. */
export const SignInOptions = z.object({
  password: z.boolean(),
  sso: z.object({ providerId: z.string(), name: z.string() }).nullable(),
});
export type SignInOptions = z.infer<typeof SignInOptions>;

/**
 * /api/health's word on the audit trail. `protection`: `protected` (the app's role may only INSERT and SELECT
 * on the append-only tables), `unprotected: <reasons>` (it could rewrite them: e.g. it owns audit_event), or
 * `pglite` (one embedded superuser: tampering is detected by the hash chain and checkpoints, not prevented).
 */
export const AuditHealth = z.object({
  protection: z.string(),
  role: z.string(),
  reasons: z.array(z.string()),
  /** The newest signed checkpoint, or null before the first. */
  lastCheckpoint: z.object({ seq: z.string(), at: z.string() }).nullable(),
});
export type AuditHealth = z.infer<typeof AuditHealth>;

/**
 * The chain walked from seq 1 and compared with every signed checkpoint (the database's and the file sink's).
 * `checkpointSeq` names the checkpoint the chain disagrees with (cut off after it, or rewritten before it).
 */
export const AuditVerification = z.union([
  z.object({
    valid: z.literal(true),
    count: z.number().int(),
    lastSeq: z.string(),
    checkpoints: z.number().int(),
    lastCheckpoint: z.object({ seq: z.string(), at: z.string() }).nullable(),
  }),
  z.object({
    valid: z.literal(false),
    count: z.number().int(),
    brokenAt: z.string(),
    reason: z.string(),
    checkpoints: z.number().int(),
    checkpointSeq: z.string().optional(),
  }),
]);
export type AuditVerification = z.infer<typeof AuditVerification>;

/** One dependency's answer to a readiness check: `error` says what failed (never a secret: no URL, no password). */
export const ReadyCheck = z.object({
  ok: z.boolean(),
  latencyMs: z.number().optional(),
  error: z.string().optional(),
});
export type ReadyCheck = z.infer<typeof ReadyCheck>;

/**
 * /api/health/ready: whether this replica can serve — the database answers, and Redis when configured (a
 * replica without it cannot reach the others). 200 with this body when ready; 503 NOT_READY with it in
 * `error.details` (and the failing checks named in the message) when not.
 */
export const Readiness = z.object({
  ready: z.boolean(),
  checks: z.object({
    database: ReadyCheck,
    redis: ReadyCheck.extend({ configured: z.boolean() }),
  }),
});
export type Readiness = z.infer<typeof Readiness>;

/** /api/health/live: the process answers (no dependency is asked: an outage must not restart every replica). */
export const Liveness = z.object({
  alive: z.literal(true),
  uptimeSeconds: z.number(),
});
export type Liveness = z.infer<typeof Liveness>;
// ---- notifications (issue 13) ------------------------------------------------------------------------------

/**
 * What a notification rule can be told about. `request.finished` carries the request's final state (filter with
 * `states`); `break_glass.used` is sent for any audited break-glass action. `agent.lost`: an agent's connection
 * has been gone longer than PYREACH_AGENT_LOST_AFTER_SECONDS — once per loss (again only after it reconnected);
 * a rule's `targetLabels` match the agent's labels, a rule with a `policyId` never gets it. `audit.verify_failed`:
 * the control plane's verification of the audit chain (periodic, or asked for) found it broken — once per
 * distinct break, to every rule that lists it whatever its filters (the chain is everyone's).
 */
export const NOTIFICATION_EVENTS = [
  'request.filed',
  'request.awaiting_approval',
  'request.approved',
  'request.rejected',
  'request.finished',
  'break_glass.used',
  'agent.lost',
  'audit.verify_failed',
] as const;
export const NotificationEvent = z.enum(NOTIFICATION_EVENTS);
export type NotificationEvent = z.infer<typeof NotificationEvent>;

/** Final request states `request.finished` can be filtered on. */
export const FINISHED_REQUEST_STATES = [
  'succeeded',
  'partially_succeeded',
  'failed',
  'cancelled',
  'expired',
  'rejected',
] as const;

export const NotificationChannel = z.enum(['webhook', 'slack']);
export type NotificationChannel = z.infer<typeof NotificationChannel>;

/** The signature header of a generic webhook: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`. */
export const NOTIFICATION_SIGNATURE_HEADER = 'x-pyreach-signature';
/** Unix seconds the signature was made at; receivers refuse old ones (replay). */
export const NOTIFICATION_TIMESTAMP_HEADER = 'x-pyreach-timestamp';
/** The delivery's id, the same on every retry: receivers dedupe on it. */
export const NOTIFICATION_IDEMPOTENCY_HEADER = 'idempotency-key';
export const NOTIFICATION_EVENT_HEADER = 'x-pyreach-event';

/** POST /api/notifications/rules. */
export const CreateNotificationRule = z
  .object({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lowercase letters, digits, dot, dash and underscore'),
    events: z.array(NotificationEvent).min(1).max(NOTIFICATION_EVENTS.length),
    channel: NotificationChannel.default('webhook'),
    /** http(s) only; loopback, link-local, private and metadata addresses are refused unless allow-listed. */
    url: z
      .url({ protocol: /^https?$/, message: 'an http(s) URL' })
      .max(2048)
      .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), { message: 'no credentials in the URL' }),
    /** Only requests under this policy. */
    policyId: Id.optional(),
    /** Only requests with a target whose host labels include all of these. */
    targetLabels: Labels.optional(),
    /** request.finished only in these final states (default: all). */
    states: z.array(z.enum(FINISHED_REQUEST_STATES)).max(FINISHED_REQUEST_STATES.length).optional(),
    enabled: z.boolean().optional(),
  })
  .strict();
export type CreateNotificationRule = z.infer<typeof CreateNotificationRule>;
export type CreateNotificationRuleInput = z.input<typeof CreateNotificationRule>;

/** PATCH /api/notifications/rules/{id}: turn a rule on or off. */
export const UpdateNotificationRule = z.object({ enabled: z.boolean() }).strict();
export type UpdateNotificationRule = z.infer<typeof UpdateNotificationRule>;

/** A rule as listed: the URL masked (a Slack webhook URL is itself a credential), never the secret. */
export const NotificationRuleRow = z.object({
  id: Id,
  name: z.string(),
  events: z.array(NotificationEvent),
  channel: NotificationChannel,
  /** Scheme, host and port; the path is masked. */
  url: z.string(),
  policyId: z.string().nullable(),
  targetLabels: Labels,
  states: z.array(z.string()),
  enabled: z.boolean(),
  createdById: z.string(),
  createdAt: Time,
  deliveries: z.object({ pending: z.number().int(), delivered: z.number().int(), failed: z.number().int() }),
});
export type NotificationRuleRow = z.infer<typeof NotificationRuleRow>;

/** One event for one rule in its delivery log. */
export const NotificationDeliveryRow = z.object({
  /** The idempotency key the receiver saw. */
  id: Id,
  ruleId: Id,
  kind: NotificationEvent,
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int(),
  lastStatus: z.number().int().nullable(),
  lastError: z.string().nullable(),
  createdAt: Time,
  nextAttemptAt: Time,
  deliveredAt: Time.nullable(),
  requestId: z.string().nullable(),
});
export type NotificationDeliveryRow = z.infer<typeof NotificationDeliveryRow>;

/** The JSON body a generic webhook receives (Slack gets blocks built from it). */
export const NotificationPayload = z.object({
  /** Same as the Idempotency-Key header. */
  id: z.string(),
  event: NotificationEvent,
  at: z.string(),
  actor: z.object({ type: z.string(), name: z.string() }),
  request: z
    .object({
      id: z.string(),
      state: RequestState,
      kind: z.string(),
      scriptId: z.string().nullable(),
      reason: z.string(),
      policyId: z.string().nullable(),
      requesterId: z.string(),
      requiredApprovals: z.number().int(),
      approverRoles: z.array(z.string()),
      /** Deep link to the request's page. */
      url: z.string(),
    })
    .nullable(),
  /** Deep link to the page about the event when it is not a request's (the agent, the audit log). */
  link: z.string().optional(),
  data: z.record(z.string(), z.unknown()),
});
export type NotificationPayload = z.infer<typeof NotificationPayload>;
