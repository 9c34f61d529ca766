/**
 * The notification outbox's writing side. Every state change worth telling someone about is audited in its own
 * transaction (audit.ts), so the audit append is where events enter the outbox: `enqueueNotifications` runs in
 * the SAME transaction as the change and its audit event, so a change commits with its notifications or
 * neither commits — a crash can lose neither. One row per (event, matching rule); the worker
 * (notifications.ts) delivers them. Actions that no rule could want cost nothing here (no query).
 */
import {
  FINISHED_REQUEST_STATES,
  type NotificationEvent,
  type NotificationPayload,
} from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import type { InjectionRequest, Prisma, Tx } from '@pyreach/db';
import { newId } from './ids';
import { labelsOf, targetsOf } from './rows';

/** An audit event as appended (what the hook needs of it). */
export interface AuditedEvent {
  seq: bigint;
  at: Date;
  actorType: string;
  actorName: string | null;
  action: string;
  subjectType: string | null;
  subjectId: string | null;
  data: unknown;
}

const FINISH_ACTIONS = new Set([
  'request.succeed',
  'request.partially_succeed',
  'request.fail',
  'request.cancelled',
  'request.cancel',
  'request.expire',
  'request.reject',
]);
const FINISHED = new Set<string>(FINISHED_REQUEST_STATES);

/** The events an audit action may stand for, before looking at the request (cheap: no database). */
function candidateKinds(e: AuditedEvent): NotificationEvent[] {
  const kinds: NotificationEvent[] = [];
  if (e.action === 'request.create') kinds.push('request.filed', 'request.awaiting_approval');
  if (e.action === 'request.approve') kinds.push('request.approved');
  if (e.action === 'request.reject') kinds.push('request.rejected');
  if (FINISH_ACTIONS.has(e.action)) kinds.push('request.finished');
  const data = e.data as { breakGlass?: unknown } | null;
  if (e.action.startsWith('break_glass.') || data?.breakGlass === true) kinds.push('break_glass.used');
  if (e.action === 'agent.lost') kinds.push('agent.lost');
  // `audit.verify_failed` is not taken from the audit trail: the verifier writes its outbox rows itself, under
  // keys a database writer cannot guess (enqueueVerifyFailure).
  return kinds;
}

/** Which of the candidates hold, given the request as it is now (in the transaction). */
function actualKinds(candidates: NotificationEvent[], req: InjectionRequest | null): NotificationEvent[] {
  return candidates.filter((k) => {
    if (k === 'request.awaiting_approval') return req?.state === 'pending';
    // A cancel asked while executions run ends later (request.cancelled): only a final state is a finish.
    if (k === 'request.finished') return !!req && FINISHED.has(req.state);
    return true;
  });
}

function labelsMatch(want: Labels, hosts: Labels[]): boolean {
  const keys = Object.entries(want);
  if (keys.length === 0) return true;
  return hosts.some((h) => keys.every(([k, v]) => h[k] === v));
}

/** Host labels of a request's targets: its agents' labels, or the selector's own labels. */
async function targetLabels(tx: Tx, req: InjectionRequest): Promise<Labels[]> {
  const targets = targetsOf(req.targets);
  if (targets.type !== 'processes') return [targets.labels];
  const ids = [...new Set(targets.processes.map((p) => p.agentId))];
  const agents = await tx.agent.findMany({ where: { id: { in: ids } }, select: { labels: true } });
  return agents.map((a) => labelsOf(a.labels));
}

type StoredPayload = Omit<NotificationPayload, 'id' | 'request'> & {
  request: Omit<NonNullable<NotificationPayload['request']>, 'url'> | null;
};

/**
 * Writes the outbox rows for these just-appended audit events, inside `tx`. Call as the last step of an append
 * (audit.ts does). Idempotent per (rule, event): the key is `<seq>:<kind>`.
 */
export async function enqueueNotifications(tx: Tx, events: readonly AuditedEvent[]): Promise<number> {
  const wanted = events.map((e) => ({ e, kinds: candidateKinds(e) })).filter((x) => x.kinds.length > 0);
  if (wanted.length === 0) return 0;
  const all = [...new Set(wanted.flatMap((w) => w.kinds))];
  const rules = await tx.notificationRule.findMany({
    where: { enabled: true, events: { hasSome: all } },
    select: { id: true, events: true, policyId: true, targetLabels: true, states: true },
  });
  if (rules.length === 0) return 0;
  const rows: OutboxRow[] = [];
  const requests = new Map<string, InjectionRequest | null>();
  const labels = new Map<string, Labels[]>();
  for (const { e, kinds } of wanted) {
    let req: InjectionRequest | null = null;
    if (e.subjectType === 'request' && e.subjectId) {
      if (!requests.has(e.subjectId))
        requests.set(e.subjectId, await tx.injectionRequest.findUnique({ where: { id: e.subjectId } }));
      req = requests.get(e.subjectId) ?? null;
    }
    for (const kind of actualKinds(kinds, req)) {
      for (const rule of rules) {
        if (!rule.events.includes(kind)) continue;
        if (rule.policyId && rule.policyId !== req?.policyId) continue;
        if (kind === 'request.finished' && rule.states.length > 0 && !rule.states.includes(req?.state ?? ''))
          continue;
        const want = labelsOf(rule.targetLabels);
        if (Object.keys(want).length > 0) {
          if (kind === 'agent.lost') {
            // The lost agent's own labels (as the event recorded them).
            if (!labelsMatch(want, [labelsOf((e.data as { labels?: unknown } | null)?.labels ?? {})]))
              continue;
          } else {
            if (!req) continue;
            if (!labels.has(req.id)) labels.set(req.id, await targetLabels(tx, req));
            if (!labelsMatch(want, labels.get(req.id) ?? [])) continue;
          }
        }
        rows.push(outboxRow(rule.id, kind, `${e.seq}:${kind}`, e, req));
      }
    }
  }
  if (rows.length === 0) return 0;
  return (await tx.notificationOutbox.createMany({ data: rows, skipDuplicates: true })).count;
}

type OutboxRow = {
  id: string;
  ruleId: string;
  eventKey: string;
  kind: string;
  payload: Prisma.InputJsonObject;
  createdAt: Date;
  nextAttemptAt: Date;
};

/** One outbox row: the stored payload (what every retry sends) of event `e` as `kind` for one rule. */
function outboxRow(
  ruleId: string,
  kind: NotificationEvent,
  eventKey: string,
  e: AuditedEvent,
  req: InjectionRequest | null,
): OutboxRow {
  const { tokenId: _t, ...data } = (e.data ?? {}) as Record<string, unknown>;
  return {
    id: newId('ntf'),
    ruleId,
    eventKey,
    kind,
    createdAt: e.at,
    nextAttemptAt: e.at,
    payload: JSON.parse(
      JSON.stringify({
        event: kind,
        at: e.at.toISOString(),
        actor: { type: e.actorType, name: e.actorName ?? e.actorType },
        request: req && {
          id: req.id,
          state: req.state as NonNullable<StoredPayload['request']>['state'],
          kind: req.kind,
          scriptId: req.scriptId,
          reason: req.reason,
          policyId: req.policyId,
          requesterId: req.requesterId,
          requiredApprovals: req.requiredApprovals,
          approverRoles: req.approverRoles,
        },
        data: {
          action: e.action,
          ...(e.subjectType && e.subjectId ? { subjectType: e.subjectType, subjectId: e.subjectId } : {}),
          ...data,
        },
      } satisfies StoredPayload),
    ) as Prisma.InputJsonObject,
  };
}

/**
 * The outbox rows of an `audit.verify_failed` event, written by the verifier itself in the transaction of that
 * event: one per enabled rule listing the event, whatever its filters. `key` is secret-derived (the break's
 * fingerprint, an HMAC under a key off the database), so a database writer cannot pre-insert rows under the keys
 * these will take and have them skipped as duplicates. Returns how many rules should get it and how many rows
 * were written (fewer: rows with these keys existed — told to the caller, who logs it).
 */
export async function enqueueVerifyFailure(
  tx: Tx,
  e: AuditedEvent,
  key: string,
): Promise<{ rules: number; written: number }> {
  const kind: NotificationEvent = 'audit.verify_failed';
  const rules = await tx.notificationRule.findMany({
    where: { enabled: true, events: { has: kind } },
    select: { id: true },
  });
  if (rules.length === 0) return { rules: 0, written: 0 };
  const rows = rules.map((r) => outboxRow(r.id, kind, `${kind}:${key}`, e, null));
  const written = (await tx.notificationOutbox.createMany({ data: rows, skipDuplicates: true })).count;
  return { rules: rules.length, written };
}
