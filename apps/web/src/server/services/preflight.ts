/**
 * Pre-flight verdicts of a request's targets, evaluated now (protocol/preflight for the rules): explicit targets
 * as named, a selector as what it matches now. Used at filing and edit (every target doomed ⇒
 * ALL_TARGETS_DOOMED), by GET /api/requests/{id}/preflight and by the form's preview. Reads only.
 */
import { PreflightBody, type Targets, type TargetsInput } from '@pyreach/protocol/api';
import { StackThread } from '@pyreach/protocol/inspect';
import { codeHash } from '@pyreach/protocol/job';
import {
  AgentLocalPolicy,
  MAX_PREFLIGHT_TARGETS,
  countVerdicts,
  preflightTarget,
  type PreflightContent,
  type PreflightReport,
  type PreflightTargetRow,
  type PreflightThreadState,
} from '@pyreach/protocol/preflight';
import { getScript } from '@pyreach/scripts';
import type { Db } from '@pyreach/db';
import { z } from 'zod';
import { AppError, parseInput } from './errors';
import { matchSelector } from './inventory';
import { cmdlineOf, containerIdentityOf, threadsOf } from './rows';

/** Thread states older than this are not used (a thread's state changes constantly). */
const THREAD_STATES_MAX_AGE_MS = 15 * 60_000;

const StacksThreads = z.object({ threads: z.array(StackThread) });

type Wanted = { agentId: string; pid: number; startTime: string; tid?: number | undefined };

/** What a request's code is, as the agent will see it (library: the library's source). */
export function preflightContentOf(req: {
  kind: 'library' | 'custom';
  scriptId: string | null;
  code: string;
}): PreflightContent {
  return {
    kind: req.kind,
    scriptId: req.scriptId,
    codeHash: codeHash(req.code),
    codeBytes: Buffer.byteLength(req.code, 'utf8'),
    // Requests never ask to wake (only `pyreach run --wake` does); the thread verdict says what it would do.
    wake: false,
  };
}

const keyOf = (t: { agentId: string; pid: number; startTime: string }) =>
  `${t.agentId}:${t.pid}:${t.startTime}`;

/** Every target of `targets` (a selector: its matches now, the first MAX_PREFLIGHT_TARGETS) with its verdict. */
export async function preflightOf(
  db: Db,
  targets: Targets,
  content: PreflightContent,
  now: Date = new Date(),
): Promise<PreflightReport> {
  let wanted: Wanted[];
  let truncated = 0;
  if (targets.type === 'processes') wanted = targets.processes;
  else {
    const matched = await matchSelector(
      db,
      { labels: targets.labels, process: targets.process },
      { limit: MAX_PREFLIGHT_TARGETS + 10_000 },
    );
    truncated = Math.max(matched.length - MAX_PREFLIGHT_TARGETS, 0);
    wanted = matched.slice(0, MAX_PREFLIGHT_TARGETS);
  }
  const agentIds = [...new Set(wanted.map((w) => w.agentId))];
  const pids = [...new Set(wanted.map((w) => w.pid))];
  const agents = await db.agent.findMany({
    where: { id: { in: agentIds } },
    select: {
      id: true,
      status: true,
      revokedAt: true,
      host: { select: { id: true, hostname: true, localPolicy: true } },
    },
  });
  const byAgent = new Map(agents.map((a) => [a.id, a]));
  const hostIds = agents.flatMap((a) => (a.host ? [a.host.id] : []));
  const agentOfHost = new Map(agents.flatMap((a) => (a.host ? [[a.host.id, a.id] as const] : [])));
  const procs =
    hostIds.length === 0
      ? []
      : await db.pythonProcess.findMany({ where: { hostId: { in: hostIds }, pid: { in: pids } } });
  const procByKey = new Map(procs.map((p) => [keyOf({ ...p, agentId: agentOfHost.get(p.hostId)! }), p]));
  const inspections =
    agentIds.length === 0
      ? []
      : await db.processInspection.findMany({
          where: {
            agentId: { in: agentIds },
            pid: { in: pids },
            what: 'stacks',
            state: 'succeeded',
            finishedAt: { gte: new Date(now.getTime() - THREAD_STATES_MAX_AGE_MS) },
          },
          orderBy: { finishedAt: 'desc' },
          select: { agentId: true, pid: true, startTime: true, finishedAt: true, result: true },
        });
  const statesByKey = new Map<string, { at: string; threads: PreflightThreadState[] }>();
  for (const i of inspections) {
    const k = keyOf(i);
    if (statesByKey.has(k)) continue; // newest first
    const parsed = StacksThreads.safeParse(i.result);
    if (!parsed.success) continue;
    const threads = parsed.data.threads.flatMap((t) =>
      t.state
        ? [
            {
              tid: t.tid,
              name: t.name,
              status: t.state.status,
              syscall: t.state.syscall ? (t.state.syscall.name ?? `#${t.state.syscall.number}`) : null,
              uninterruptible: t.state.uninterruptible,
            },
          ]
        : [],
    );
    if (threads.length > 0) statesByKey.set(k, { at: i.finishedAt!.toISOString(), threads });
  }

  const rows: PreflightTargetRow[] = wanted.map((w) => {
    const agent = byAgent.get(w.agentId);
    const proc = procByKey.get(keyOf(w));
    const policy = AgentLocalPolicy.safeParse(agent?.host?.localPolicy);
    const threads = proc ? threadsOf(proc.threads) : [];
    const { verdict, reasons } = preflightTarget(
      {
        process: proc
          ? { uid: proc.uid, user: proc.user, remoteDebugEnabled: proc.remoteDebugEnabled, threads }
          : null,
        agent: agent
          ? {
              revoked: agent.revokedAt !== null,
              online: agent.status === 'online',
              localPolicy: policy.success ? policy.data : null,
            }
          : null,
        inventoryKnown: agent?.host != null,
        tid: w.tid,
        threadStates: statesByKey.get(keyOf(w)) ?? null,
      },
      content,
    );
    const pod = proc ? containerIdentityOf(proc.containerIdentity)?.pod : undefined;
    return {
      agentId: w.agentId,
      hostname: agent?.host?.hostname ?? null,
      pid: w.pid,
      startTime: w.startTime,
      tid: w.tid ?? null,
      user: proc?.user ?? null,
      uid: proc?.uid ?? null,
      exe: proc?.exe ?? null,
      cmdline: proc ? cmdlineOf(proc.cmdline) : null,
      inContainer: proc?.inContainer ?? null,
      container: proc?.container ?? null,
      pod: pod ? `${pod.namespace}/${pod.name}${pod.containerName ? ` · ${pod.containerName}` : ''}` : null,
      verdict,
      reasons,
    };
  });
  const counts = countVerdicts(rows);
  return {
    evaluatedAt: now.toISOString(),
    truncated,
    counts,
    allDoomed: rows.length > 0 && counts.doomed === rows.length,
    targets: rows,
  };
}

/**
 * Filing and edit: a request whose every target is doomed is refused (422 ALL_TARGETS_DOOMED), naming each
 * target and why; a selector matching nothing is not refused here (it may match by dispatch time).
 */
export async function refuseIfAllDoomed(db: Db, targets: Targets, content: PreflightContent, now: Date) {
  const report = await preflightOf(db, targets, content, now);
  if (!report.allDoomed) return report;
  const details = report.targets.map((t) => ({
    agentId: t.agentId,
    hostname: t.hostname,
    pid: t.pid,
    startTime: t.startTime,
    reasons: t.reasons.filter((r) => r.level === 'doomed').map(({ code, message }) => ({ code, message })),
  }));
  const first = details[0]!;
  const summary =
    details.length === 1
      ? `pid ${first.pid}${first.hostname ? ` on ${first.hostname}` : ''}: ${first.reasons.map((r) => r.message).join('; ')}`
      : `all ${details.length} targets`;
  throw new AppError('ALL_TARGETS_DOOMED', `every target of the request is doomed (${details.length})`, {
    userMessage: `targets: every target would be refused before it runs (${summary}); nothing was filed`,
    details: { targets: details },
  });
}

/** The form's preview: a draft's targets and code, evaluated now (nothing stored). */
export async function previewPreflight(db: Db, input: z.input<typeof PreflightBody>, now: Date = new Date()) {
  const body = parseInput(PreflightBody, input, 'pre-flight preview');
  let code = body.code ?? '';
  if (body.kind === 'library') {
    const script = getScript(body.scriptId ?? '');
    if (!script)
      throw new AppError('VALIDATION', `unknown library script '${body.scriptId}'`, {
        userMessage: `scriptId: no library script named '${body.scriptId}'`,
      });
    code = script.source;
  }
  return preflightOf(
    db,
    body.targets as Targets,
    preflightContentOf({ kind: body.kind, scriptId: body.scriptId ?? null, code }),
    now,
  );
}

export type { TargetsInput };
