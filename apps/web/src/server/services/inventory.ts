import type { PodMatch, ProcessMatch, TargetProcess } from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import type {
  InventoryDelta,
  InventorySnapshot,
  PythonProcess as WireProcess,
} from '@pyreach/protocol/inventory';
import { Prisma, type Agent, type Db, type Host, type PrismaClient, type PythonProcess } from '@pyreach/db';
import { agentOf } from './agents';
import { outcome, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import {
  cmdlineOf,
  containerIdentityOf,
  executionStateOf,
  labelsOf,
  requestStateOf,
  threadsOf,
} from './rows';

/** Which processes a selector names: hosts by label (all must match) and processes by substring. */
export interface Selector {
  labels: Labels;
  process?: ProcessMatch;
}

function processRow(hostId: string, p: WireProcess, seenAt: Date) {
  return {
    hostId,
    pid: p.pid,
    nsPid: p.nsPid,
    startTime: p.startTime,
    uid: p.uid,
    user: p.user,
    exe: p.exe,
    cmdline: p.cmdline,
    cwd: p.cwd ?? null,
    pythonVersion: p.pythonVersion,
    freeThreaded: p.freeThreaded,
    remoteDebugEnabled: p.remoteDebugEnabled,
    inContainer: p.inContainer,
    container: p.container ?? null,
    // Replaced whole on every report (a delta's upsert included): what the agent no longer says is gone.
    containerIdentity: p.containerIdentity ?? Prisma.DbNull,
    threads: p.threads,
    inspectError: p.inspectError ?? null,
    seenAt,
  };
}

function scannedAtOf(s: string, now: Date): Date {
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? now : d;
}

/**
 * Stores a full inventory: upserts the host, replaces its process rows, refreshes the agent's version and the
 * labels it reports (`reportedLabels`: shown, never matched by a policy or a selector — the labels that decide
 * are the join token's or an admin's, in `labels`, and an agent cannot change them). Not audited: it is an
 * observation, not a decision.
 */
export async function saveSnapshot(
  db: PrismaClient,
  agentId: string,
  snap: InventorySnapshot,
  now: Date = new Date(),
): Promise<Outcome<Host>> {
  const scannedAt = scannedAtOf(snap.scannedAt, now);
  const host = await db.$transaction(async (tx) => {
    const agent = await tx.agent.findUnique({ where: { id: agentId }, select: { revokedAt: true } });
    if (!agent || agent.revokedAt)
      throw new AppError('FORBIDDEN', `inventory from unknown or revoked agent ${agentId}`, {
        userMessage: 'this agent is not allowed',
      });
    await tx.agent.update({
      where: { id: agentId },
      data: { reportedLabels: snap.host.labels, version: snap.host.agentVersion, lastSeenAt: now },
    });
    const facts = {
      hostname: snap.host.hostname,
      os: snap.host.os,
      kernel: snap.host.kernel,
      arch: snap.host.arch,
      bootId: snap.host.bootId ?? null,
      // What the agent's own policy refuses (pre-flight verdicts); NULL from an agent too old to say.
      localPolicy: snap.host.localPolicy ?? Prisma.DbNull,
      scannedAt,
    };
    const host = await tx.host.upsert({
      where: { agentId },
      create: { id: newId('host'), agentId, ...facts },
      update: facts,
    });
    await tx.pythonProcess.deleteMany({ where: { hostId: host.id } });
    if (snap.processes.length > 0) {
      await tx.pythonProcess.createMany({
        data: snap.processes.map((p) => ({ id: newId('proc'), ...processRow(host.id, p, scannedAt) })),
      });
    }
    return host;
  });
  return outcome(host, [{ kind: 'fleet', hostId: host.id }]);
}

/** Applies a change list on top of the last snapshot. NOT_FOUND when no snapshot arrived yet (send one). */
export async function applyDelta(
  db: PrismaClient,
  agentId: string,
  delta: InventoryDelta,
  now: Date = new Date(),
): Promise<Outcome<null>> {
  const seenAt = scannedAtOf(delta.scannedAt, now);
  const hostId = await db.$transaction(async (tx) => {
    const host = await tx.host.findUnique({
      where: { agentId },
      include: { agent: { select: { revokedAt: true } } },
    });
    if (!host)
      throw new AppError('NOT_FOUND', `no snapshot yet for agent ${agentId}`, {
        userMessage: 'send a full inventory snapshot first',
      });
    if (host.agent.revokedAt)
      throw new AppError('FORBIDDEN', `inventory from revoked agent ${agentId}`, {
        userMessage: 'this agent is not allowed',
      });
    for (const r of delta.removed) {
      await tx.pythonProcess.deleteMany({ where: { hostId: host.id, pid: r.pid, startTime: r.startTime } });
    }
    for (const p of delta.upserted) {
      const row = processRow(host.id, p, seenAt);
      await tx.pythonProcess.upsert({
        where: { hostId_pid_startTime: { hostId: host.id, pid: p.pid, startTime: p.startTime } },
        create: { id: newId('proc'), ...row },
        update: row,
      });
    }
    await tx.host.update({ where: { id: host.id }, data: { scannedAt: seenAt } });
    await tx.agent.update({ where: { id: agentId }, data: { lastSeenAt: now } });
    return host.id;
  });
  return outcome(null, [{ kind: 'fleet', hostId }]);
}

export type HostSummary = Host & {
  agent: {
    id: string;
    name: string;
    labels: Labels;
    status: string;
    lastSeenAt: Date | null;
    revokedAt: Date | null;
  };
  processCount: number;
};

/** Hosts with their agent and process count; optionally only hosts whose agent has all `labels`. */
export async function listHosts(
  db: Db,
  filter: { labels?: Labels; includeRevoked?: boolean } = {},
): Promise<HostSummary[]> {
  const hosts = await db.host.findMany({
    where: filter.includeRevoked ? {} : { agent: { revokedAt: null } },
    include: {
      agent: {
        select: { id: true, name: true, labels: true, status: true, lastSeenAt: true, revokedAt: true },
      },
      _count: { select: { processes: true } },
    },
    orderBy: { hostname: 'asc' },
  });
  return hosts
    .map(({ _count, agent, ...h }) => ({
      ...h,
      agent: { ...agent, labels: labelsOf(agent.labels) },
      processCount: _count.processes,
    }))
    .filter((h) => labelsMatch(h.agent.labels, filter.labels ?? {}));
}

/** True when every key of `wanted` is present in `have` with the same value ({} matches everything). */
export function labelsMatch(have: Labels, wanted: Labels): boolean {
  return Object.entries(wanted).every(([k, v]) => have[k] === v);
}

export interface ProcessFilter {
  agentId?: string;
  hostId?: string;
  labels?: Labels;
  cmdlineContains?: string;
  user?: string;
  exeContains?: string;
  /** Pod terms (exact): a process without pod facts never matches, whatever the terms. */
  pod?: PodMatch;
  limit?: number;
}

/**
 * The JSONB document a process's `containerIdentity` must contain for these pod terms: containment is equality
 * for each scalar and "all of these" for the label set, and NULL (a host process) contains nothing.
 */
export function podContainment(pod: PodMatch): string {
  const want: Record<string, unknown> = {};
  if (pod.namespace !== undefined) want.namespace = pod.namespace;
  if (pod.container !== undefined) want.containerName = pod.container;
  if (pod.labels && Object.keys(pod.labels).length > 0) want.labels = pod.labels;
  if (pod.workload) want.workload = pod.workload.kind ? pod.workload : { name: pod.workload.name };
  return JSON.stringify({ pod: want });
}

/** Processes of non-revoked agents matching the filter (case-insensitive substrings), at most `limit` (1000). */
export async function listProcesses(db: Db, filter: ProcessFilter = {}): Promise<TargetProcess[]> {
  const where: string[] = ['a."revokedAt" IS NULL'];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replaceAll('?', `$${params.length}`));
  };
  if (filter.agentId) add('a."id" = ?', filter.agentId);
  if (filter.hostId) add('h."id" = ?', filter.hostId);
  if (filter.labels && Object.keys(filter.labels).length > 0)
    add('a."labels" @> ?::jsonb', JSON.stringify(filter.labels));
  if (filter.user) add('p."user" = ?', filter.user);
  if (filter.pod) add('p."containerIdentity" @> ?::jsonb', podContainment(filter.pod));
  if (filter.exeContains) add('strpos(lower(p."exe"), lower(?)) > 0', filter.exeContains);
  if (filter.cmdlineContains) {
    add(
      `strpos(lower(array_to_string(ARRAY(SELECT jsonb_array_elements_text(p."cmdline")), ' ')), lower(?)) > 0`,
      filter.cmdlineContains,
    );
  }
  params.push(Math.min(Math.max(filter.limit ?? 1000, 1), 10_000));
  const rows = await db.$queryRawUnsafe<
    (PythonProcess & { agentId: string; hostname: string; labels: Labels })[]
  >(
    `SELECT p.*, h."agentId", h."hostname", a."labels"
       FROM "python_process" p JOIN "host" h ON h."id" = p."hostId" JOIN "agent" a ON a."id" = h."agentId"
      WHERE ${where.join(' AND ')}
      ORDER BY h."hostname", p."pid" LIMIT $${params.length}`,
    ...params,
  );
  return rows.map((r) => ({
    agentId: r.agentId,
    hostId: r.hostId,
    hostname: r.hostname,
    labels: labelsOf(r.labels),
    pid: r.pid,
    startTime: r.startTime,
    user: r.user,
    exe: r.exe,
    cmdline: cmdlineOf(r.cmdline),
    pythonVersion: r.pythonVersion,
    remoteDebugEnabled: r.remoteDebugEnabled,
    pod: containerIdentityOf(r.containerIdentity)?.pod ?? null,
  }));
}

/** The processes a selector names right now (also the live preview while someone writes a request). */
export async function matchSelector(
  db: Db,
  selector: Selector,
  opts: { limit?: number } = {},
): Promise<TargetProcess[]> {
  return listProcesses(db, { labels: selector.labels, ...selector.process, limit: opts.limit ?? 10_000 });
}

export interface FleetFilter {
  includeRevoked?: boolean;
  /** Words (whitespace-separated, case-insensitive) that must all appear in a process's searchable text. */
  q?: string;
  labels?: Labels;
  status?: 'online' | 'offline';
  debug?: 'on' | 'off' | 'unknown';
  /** Processes in pods of this namespace (agent-reported: for finding, never for deciding). */
  namespace?: string;
  /** Processes in pods of this workload: `Kind/name` or `name`. */
  workload?: string;
  /** `host` (default): hostname then pid; `pod`: namespace, workload, pod name, then hostname and pid. */
  order?: 'host' | 'pod';
  offset?: number;
  /** Page size, 1..500 (default 100). */
  limit?: number;
}

type HostWithAgent = Host & { agent: Agent };

function fleetHostOf(h: HostWithAgent, connectedHere: (agentId: string) => boolean) {
  return {
    id: h.id,
    hostname: h.hostname,
    os: h.os,
    kernel: h.kernel,
    arch: h.arch,
    scannedAt: h.scannedAt,
    agent: { ...agentOf(h.agent), connectedHere: connectedHere(h.agent.id) },
  };
}

function fleetProcessOf({ hostId: _hostId, containerIdentity, ...p }: PythonProcess) {
  const identity = containerIdentityOf(containerIdentity);
  return {
    ...p,
    cmdline: cmdlineOf(p.cmdline),
    threads: threadsOf(p.threads),
    ...(identity ? { containerIdentity: identity } : {}),
  };
}

/** A fleet workload filter (`Kind/name` or `name`) as pod terms. */
function workloadTerm(w: string): PodMatch['workload'] {
  const slash = w.indexOf('/');
  return slash < 0 ? { name: w } : { kind: w.slice(0, slash), name: w.slice(slash + 1) };
}

/** The fleet's `order: 'pod'`: processes of one namespace and workload together, host processes last. */
const POD_ORDER = `p."containerIdentity"->'pod'->>'namespace' NULLS LAST,
  p."containerIdentity"->'pod'->'workload'->>'kind' NULLS LAST,
  p."containerIdentity"->'pod'->'workload'->>'name' NULLS LAST, p."containerIdentity"->'pod'->>'name' NULLS LAST, `;

/** The text a fleet search looks in, as one lower-cased SQL expression over p (process) and h (host). */
const SEARCH_TEXT = `lower(concat_ws(' ', h."hostname", p."pid"::text, p."user", p."exe",
  array_to_string(ARRAY(SELECT jsonb_array_elements_text(p."cmdline")), ' '), p."container", p."pythonVersion",
  p."containerIdentity"->'pod'->>'namespace', p."containerIdentity"->'pod'->>'name',
  p."containerIdentity"->'pod'->>'containerName', p."containerIdentity"->'pod'->'workload'->>'name'))`;

/**
 * The dashboard's fleet view, one page at a time: the processes matching every filter, ordered by hostname
 * then pid, with the hosts they run on. Filters run in the database (one count, one page of ids), so the cost
 * follows the page size, not the fleet's. Hosts with no process at all appear on the first page when their
 * host-level filters match (so a fresh host is visible). `connectedHere`: whether this replica holds the agent.
 */
export async function fleetView(db: Db, filter: FleetFilter, connectedHere: (agentId: string) => boolean) {
  const offset = Math.max(Math.trunc(filter.offset ?? 0), 0);
  const limit = Math.min(Math.max(Math.trunc(filter.limit ?? 100), 1), 500);
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replaceAll('?', `$${params.length}`));
  };
  if (!filter.includeRevoked) where.push('a."revokedAt" IS NULL');
  if (filter.labels && Object.keys(filter.labels).length > 0)
    add('a."labels" @> ?::jsonb', JSON.stringify(filter.labels));
  if (filter.status === 'online') where.push(`a."status" = 'online'`);
  if (filter.status === 'offline') where.push(`a."status" <> 'online'`);
  const hostWhere = [...where];
  const hostParams = [...params];
  if (filter.debug === 'on') where.push('p."remoteDebugEnabled" = true');
  if (filter.debug === 'off') where.push('p."remoteDebugEnabled" = false');
  if (filter.debug === 'unknown') where.push('p."remoteDebugEnabled" IS NULL');
  if (filter.namespace !== undefined || filter.workload !== undefined) {
    const pod: PodMatch = {};
    if (filter.namespace !== undefined) pod.namespace = filter.namespace;
    if (filter.workload !== undefined) pod.workload = workloadTerm(filter.workload);
    add('p."containerIdentity" @> ?::jsonb', podContainment(pod));
  }
  const podFiltered = filter.namespace !== undefined || filter.workload !== undefined;
  const words = (filter.q ?? '').toLowerCase().split(/\s+/).filter(Boolean).slice(0, 16);
  for (const w of words) add(`strpos(${SEARCH_TEXT}, ?) > 0`, w);
  const from = `FROM "python_process" p JOIN "host" h ON h."id" = p."hostId" JOIN "agent" a ON a."id" = h."agentId"`;
  const cond = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const [counted] = await db.$queryRawUnsafe<{ n: bigint | number }[]>(
    `SELECT count(*) AS n ${from} ${cond}`,
    ...params,
  );
  const ids = await db.$queryRawUnsafe<{ id: string }[]>(
    `SELECT p."id" ${from} ${cond} ORDER BY ${filter.order === 'pod' ? POD_ORDER : ''}h."hostname", h."id", p."pid", p."startTime"
      LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    ...params,
    limit,
    offset,
  );
  const rows = ids.length
    ? await db.pythonProcess.findMany({ where: { id: { in: ids.map((r) => r.id) } } })
    : [];
  const byId = new Map(rows.map((r) => [r.id, r]));
  const page = ids.flatMap((r) => byId.get(r.id) ?? []);
  // Empty hosts: only when no process-level filter could have excluded them, and only on the first page.
  let emptyHostIds: string[] = [];
  if (offset === 0 && filter.debug === undefined && !podFiltered) {
    const hostCond = [
      ...hostWhere,
      'NOT EXISTS (SELECT 1 FROM "python_process" p WHERE p."hostId" = h."id")',
    ];
    const hp = [...hostParams];
    for (const w of words) {
      hp.push(w);
      hostCond.push(`strpos(lower(h."hostname"), $${hp.length}) > 0`);
    }
    emptyHostIds = (
      await db.$queryRawUnsafe<{ id: string }[]>(
        `SELECT h."id" FROM "host" h JOIN "agent" a ON a."id" = h."agentId" WHERE ${hostCond.join(' AND ')}
          ORDER BY h."hostname" LIMIT 100`,
        ...hp,
      )
    ).map((r) => r.id);
  }
  const hostIds = [...new Set([...page.map((p) => p.hostId), ...emptyHostIds])];
  const hosts = await db.host.findMany({
    where: { id: { in: hostIds } },
    include: { agent: true },
    orderBy: [{ hostname: 'asc' }, { id: 'asc' }],
  });
  const all = await db.host.findMany({
    where: filter.includeRevoked ? {} : { agent: { revokedAt: null } },
    select: { agent: { select: { status: true, labels: true } }, _count: { select: { processes: true } } },
  });
  const labelSet = new Set<string>();
  for (const h of all)
    for (const [k, v] of Object.entries(labelsOf(h.agent.labels))) labelSet.add(`${k}=${v}`);
  const revokedCond = filter.includeRevoked ? '' : 'AND a."revokedAt" IS NULL';
  const podChoices = await db.$queryRawUnsafe<{ ns: string; kind: string | null; name: string | null }[]>(
    `SELECT DISTINCT p."containerIdentity"->'pod'->>'namespace' AS ns,
            p."containerIdentity"->'pod'->'workload'->>'kind' AS kind,
            p."containerIdentity"->'pod'->'workload'->>'name' AS name
       ${from} WHERE p."containerIdentity"->'pod'->>'namespace' IS NOT NULL ${revokedCond}
      ORDER BY 1, 2, 3 LIMIT 1000`,
  );
  return {
    hosts: hosts.map((h) => ({
      ...fleetHostOf(h, connectedHere),
      processes: page.filter((p) => p.hostId === h.id).map(fleetProcessOf),
    })),
    page: { offset, limit, total: Number(counted?.n ?? 0) },
    totals: {
      hosts: all.length,
      online: all.filter((h) => h.agent.status === 'online').length,
      processes: all.reduce((n, h) => n + h._count.processes, 0),
    },
    labels: [...labelSet].sort(),
    namespaces: [...new Set(podChoices.map((c) => c.ns))],
    workloads: podChoices.flatMap((c) => (c.kind && c.name ? [`${c.ns}/${c.kind}/${c.name}`] : [])),
  };
}

/** One process for the fleet's drawer: its host and the latest `recent` requests that targeted it. */
export async function processDetail(
  db: Db,
  id: string,
  connectedHere: (agentId: string) => boolean,
  opts: { recent?: number } = {},
) {
  const p = await db.pythonProcess.findUnique({
    where: { id },
    include: { host: { include: { agent: true } } },
  });
  if (!p)
    throw new AppError('NOT_FOUND', `no process ${id}`, { userMessage: 'this process is no longer known' });
  const executions = await db.execution.findMany({
    where: { agentId: p.host.agentId, pid: p.pid, startTime: p.startTime },
    orderBy: { queuedAt: 'desc' },
    take: opts.recent ?? 10,
    include: { request: { select: { id: true, kind: true, scriptId: true, reason: true, state: true } } },
  });
  const { host, ...proc } = p;
  return {
    host: fleetHostOf(host, connectedHere),
    process: fleetProcessOf(proc),
    recentRequests: executions.map((e) => ({
      requestId: e.request.id,
      kind: e.request.kind,
      scriptId: e.request.scriptId,
      reason: e.request.reason,
      requestState: requestStateOf(e.request.state),
      executionState: executionStateOf(e.state),
      queuedAt: e.queuedAt,
      finishedAt: e.finishedAt,
    })),
  };
}
