import type { ProcessMatch, TargetProcess } from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import type {
  InventoryDelta,
  InventorySnapshot,
  PythonProcess as WireProcess,
} from '@pyreach/protocol/inventory';
import type { Db, Host, PrismaClient, PythonProcess } from '@pyreach/db';
import { agentOf } from './agents';
import { outcome, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import { cmdlineOf, labelsOf, threadsOf } from './rows';

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
  limit?: number;
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

/**
 * The dashboard's fleet view: every host with its agent and its full process snapshot, in one read.
 * `connectedHere` says whether the agent holds a connection to this replica.
 */
export async function fleetView(
  db: Db,
  filter: { includeRevoked?: boolean },
  connectedHere: (agentId: string) => boolean,
) {
  const hosts = await db.host.findMany({
    where: filter.includeRevoked ? {} : { agent: { revokedAt: null } },
    orderBy: { hostname: 'asc' },
    include: { agent: true, processes: { orderBy: { pid: 'asc' } } },
  });
  return hosts.map((h) => ({
    id: h.id,
    hostname: h.hostname,
    os: h.os,
    kernel: h.kernel,
    arch: h.arch,
    scannedAt: h.scannedAt,
    agent: { ...agentOf(h.agent), connectedHere: connectedHere(h.agent.id) },
    processes: h.processes.map(({ hostId: _hostId, ...p }) => ({
      ...p,
      cmdline: cmdlineOf(p.cmdline),
      threads: threadsOf(p.threads),
    })),
  }));
}
