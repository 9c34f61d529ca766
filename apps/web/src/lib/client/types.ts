/** Shapes of the HTTP API as the dashboard reads them (JSON: dates are ISO strings). */
export type Labels = Record<string, string>;

export interface FleetProcess {
  id: string;
  pid: number;
  nsPid: number;
  startTime: string;
  uid: number;
  user: string | null;
  exe: string;
  cmdline: string[];
  cwd: string | null;
  pythonVersion: string | null;
  freeThreaded: boolean | null;
  remoteDebugEnabled: boolean | null;
  inContainer: boolean;
  container: string | null;
  threads: { tid: number; main: boolean }[];
  inspectError: string | null;
  seenAt: string;
}

export interface FleetHost {
  id: string;
  hostname: string;
  os: string;
  kernel: string;
  arch: string;
  scannedAt: string;
  agent: {
    id: string;
    name: string;
    labels: Labels;
    status: string;
    lastSeenAt: string | null;
    version: string;
    revokedAt: string | null;
    connectedHere?: boolean;
  };
  processes: FleetProcess[];
}

/** A process a request can target (GET /api/fleet/processes, POST /api/fleet/preview): the service's own shape
 * (no dates, so JSON changes nothing); a type-only import, erased from the browser bundle. */
export type { TargetProcess } from '../../server/services/inventory';

export interface ScriptSummary {
  id: string;
  version: number;
  title: string;
  description: string;
  risk: string;
  readOnly: boolean;
  inline: boolean;
  paramsSchema: JsonSchema;
  source: string;
}

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

export interface AuditEvent {
  seq: string | number;
  at: string;
  actorType: string;
  actorId: string | null;
  actorName: string | null;
  action: string;
  subjectType: string | null;
  subjectId: string | null;
  data: unknown;
  prevHash: string;
  hash: string;
}

export interface UserRow {
  id: string;
  email: string;
  name: string;
  role: string;
  banned: boolean | null;
  createdAt: string;
}

export interface AgentRow {
  id: string;
  name: string;
  labels: Labels;
  version: string;
  status: string;
  lastSeenAt: string | null;
  connectedAt: string | null;
  revokedAt: string | null;
  revokedReason: string | null;
  enrolledAt: string;
  connectedHere?: boolean;
}

export interface Policy {
  id: string;
  name: string;
  description: string | null;
  matchLabels: Labels;
  priority: number;
  requiredApprovals: number;
  approverRoles: string[];
  allowCustomCode: boolean;
  approvalValidMinutes: number;
}

export type TargetSpec =
  | { kind: 'processes'; processes: { agentId: string; pid: number; startTime: string }[] }
  | {
      kind: 'selector';
      selector: {
        labels: Labels;
        process?: { cmdlineContains?: string; user?: string; exeContains?: string };
      };
    };

export interface Review {
  id: string;
  reviewerId: string;
  reviewerName?: string | null;
  reviewer?: { id: string; name: string; email?: string } | null;
  decision: string;
  comment: string | null;
  createdAt: string;
}

export interface Execution {
  id: string;
  agentId: string;
  pid: number;
  startTime: string;
  hostname?: string | null;
  state: string;
  output: string;
  result: unknown;
  errorCode: string | null;
  errorMessage: string | null;
  error: { type?: string; message?: string; traceback?: string } | null;
  queuedAt: string | null;
  sentAt: string | null;
  pickedUpAt: string | null;
  finishedAt: string | null;
}

export interface RequestRow {
  id: string;
  kind: 'script' | 'custom' | string;
  scriptId: string | null;
  code: string;
  params: Record<string, unknown>;
  targets: TargetSpec | unknown;
  rollout: { concurrency?: number; maxFailures?: number } | Record<string, unknown>;
  options?: Record<string, unknown>;
  contentHash: string;
  revision: number;
  reason: string;
  state: string;
  requiredApprovals: number;
  policyId: string | null;
  policy?: Policy | null;
  policyName?: string | null;
  requesterId: string;
  requester?: { id: string; name: string; email?: string } | null;
  requesterName?: string | null;
  createdAt: string;
  updatedAt: string;
  approvedAt: string | null;
  approvalExpiresAt: string | null;
  dispatchedAt: string | null;
  completedAt: string | null;
  reviews?: Review[];
  executions?: Execution[];
  approvals?: number;
}
