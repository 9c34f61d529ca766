/**
 * Notifications (issue 13): admin-managed rules, and the delivery of the outbox rows notifications-outbox.ts
 * writes in the transaction of each change.
 *
 * A generic webhook gets the event as JSON with
 *   Idempotency-Key: <delivery id>            (the same on every retry: receivers dedupe on it)
 *   X-Pyreach-Event: <event>
 *   X-Pyreach-Timestamp: <unix seconds>       (refuse old ones: replay)
 *   X-Pyreach-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 * with a per-rule secret shown once at creation. A Slack rule posts blocks with a deep link to the request.
 *
 * Delivery: a worker claims due rows with a lease (`FOR UPDATE SKIP LOCKED`, leaseOwner/leaseUntil, attempts
 * counted at the claim), posts, and records the outcome only while it still holds the lease. A control plane
 * killed mid-delivery leaves the row leased; once the lease lapses any worker takes it again and sends it with
 * the same Idempotency-Key — at-least-once on the wire, exactly once for a receiver that dedupes on the key.
 * Failures retry with exponential backoff (jittered) up to maxAttempts, then the row is `failed`; a destination
 * the SSRF guard refuses (notifications-net.ts) fails at once. The rows are each rule's delivery log.
 */
import { createHmac, randomBytes } from 'node:crypto';
import {
  CreateNotificationRule,
  type CreateNotificationRuleInput,
  NOTIFICATION_EVENT_HEADER,
  NOTIFICATION_IDEMPOTENCY_HEADER,
  NOTIFICATION_SIGNATURE_HEADER,
  NOTIFICATION_TIMESTAMP_HEADER,
  NotificationEvent,
  NotificationPayload,
  UpdateNotificationRule,
  type NotificationDeliveryRow,
  type NotificationRuleRow,
} from '@pyreach/protocol/api';
import type { NotificationOutbox, NotificationRule, PrismaClient } from '@pyreach/db';
import { requireUser, type Actor } from './actor';
import { appendAudit } from './audit';
import { AppError, isUniqueViolation, parseInput } from './errors';
import { newId } from './ids';
import {
  checkDestination,
  DestinationRefused,
  postTo,
  type NotifyAllowList,
  type Resolver,
} from './notifications-net';
import { labelsOf } from './rows';
import type { SecretBox } from './notifications-secrets';

export interface NotifyConfig {
  allow: NotifyAllowList;
  /** Seals each rule's URL and secret in the database (notifications-secrets.ts). */
  box: SecretBox;
  /** The dashboard's public URL, for deep links. */
  publicUrl: string;
  /** How long a claimed delivery is this worker's; must exceed timeoutMs. */
  leaseMs: number;
  timeoutMs: number;
  maxAttempts: number;
  /** First retry after about this long, doubling up to backoffMaxMs. */
  backoffMs: number;
  backoffMaxMs: number;
  /** DNS, replaceable in tests (a name resolving to loopback). */
  resolve?: Resolver;
}

export const DEFAULT_NOTIFY: Omit<NotifyConfig, 'allow' | 'publicUrl' | 'box'> = {
  leaseMs: 60_000,
  timeoutMs: 10_000,
  maxAttempts: 10,
  backoffMs: 5_000,
  backoffMaxMs: 3_600_000,
};

/** Scheme, host and port; the path (a Slack URL's secret part) masked. */
export function maskUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname === '/' && !u.search ? '/' : '/…'}`;
}

type Counts = { pending: number; delivered: number; failed: number };

/** A rule's URL and secret, unsealed (only for delivery and for masking). */
export function unseal(box: SecretBox, r: Pick<NotificationRule, 'id' | 'url' | 'secret'>) {
  return { url: box.open(r.url, `${r.id}:url`), secret: box.open(r.secret, `${r.id}:secret`) };
}

function ruleView(box: SecretBox, r: NotificationRule, counts: Counts): NotificationRuleRow {
  return {
    id: r.id,
    name: r.name,
    events: r.events.map((e) => NotificationEvent.parse(e)),
    channel: r.channel === 'slack' ? 'slack' : 'webhook',
    url: maskUrl(unseal(box, r).url),
    policyId: r.policyId,
    targetLabels: labelsOf(r.targetLabels),
    states: r.states,
    enabled: r.enabled,
    createdById: r.createdById,
    createdAt: r.createdAt.toISOString(),
    deliveries: counts,
  };
}

async function countsOf(db: PrismaClient, ruleIds: string[]): Promise<Map<string, Counts>> {
  const groups = await db.notificationOutbox.groupBy({
    by: ['ruleId', 'status'],
    where: { ruleId: { in: ruleIds } },
    _count: { _all: true },
  });
  const out = new Map<string, Counts>();
  for (const id of ruleIds) out.set(id, { pending: 0, delivered: 0, failed: 0 });
  for (const g of groups) {
    const c = out.get(g.ruleId);
    if (c && (g.status === 'pending' || g.status === 'delivered' || g.status === 'failed'))
      c[g.status] = g._count._all;
  }
  return out;
}

function refusedUrl(reason: string): AppError {
  return new AppError('VALIDATION', `notification url refused: ${reason}`, {
    userMessage: `url: ${reason}`,
    details: [{ path: ['url'], message: reason }],
  });
}

/** Creates a rule (admins). The URL passes the SSRF guard now and again at each delivery. Audited. */
export async function createRule(
  db: PrismaClient,
  actor: Actor,
  body: CreateNotificationRuleInput,
  cfg: Pick<NotifyConfig, 'allow' | 'resolve' | 'box'>,
  now: Date = new Date(),
): Promise<{ rule: NotificationRuleRow; secret: string | null }> {
  const admin = requireUser(actor, 'notification:manage');
  const input = parseInput(CreateNotificationRule, body, 'notification rule');
  try {
    await checkDestination(input.url, cfg.allow, cfg.resolve);
  } catch (err) {
    if (err instanceof DestinationRefused) throw refusedUrl(err.message);
    throw err;
  }
  if (
    input.policyId &&
    !(await db.policy.findUnique({ where: { id: input.policyId }, select: { id: true } }))
  )
    throw new AppError('VALIDATION', `policy ${input.policyId} does not exist`, {
      userMessage: 'policyId: no such policy',
      details: [{ path: ['policyId'], message: 'no such policy' }],
    });
  const secret = input.channel === 'webhook' ? `whsec_${randomBytes(32).toString('base64url')}` : null;
  try {
    const id = newId('nrule');
    const row = await db.$transaction(async (tx) => {
      const r = await tx.notificationRule.create({
        data: {
          id,
          name: input.name,
          events: [...new Set(input.events)],
          channel: input.channel,
          url: cfg.box.seal(input.url, `${id}:url`),
          secret: cfg.box.seal(secret ?? '', `${id}:secret`),
          policyId: input.policyId ?? null,
          targetLabels: input.targetLabels ?? {},
          states: [...new Set(input.states ?? [])],
          enabled: input.enabled ?? true,
          createdById: admin.id,
          createdAt: now,
          updatedAt: now,
        },
      });
      await appendAudit(
        tx,
        {
          actor,
          action: 'notification_rule.create',
          subjectType: 'notification_rule',
          subjectId: r.id,
          data: {
            name: r.name,
            events: r.events,
            channel: r.channel,
            url: maskUrl(input.url),
            policyId: r.policyId,
            targetLabels: input.targetLabels ?? {},
            states: r.states,
          },
        },
        now,
      );
      return r;
    });
    return { rule: ruleView(cfg.box, row, { pending: 0, delivered: 0, failed: 0 }), secret };
  } catch (err) {
    if (isUniqueViolation(err))
      throw new AppError('CONFLICT', `notification rule ${input.name} exists`, {
        userMessage: `name: a notification rule named ${input.name} already exists`,
      });
    throw err;
  }
}

export async function listRules(
  db: PrismaClient,
  actor: Actor,
  box: SecretBox,
): Promise<NotificationRuleRow[]> {
  requireUser(actor, 'notification:manage');
  const rows = await db.notificationRule.findMany({ orderBy: { createdAt: 'asc' } });
  const counts = await countsOf(
    db,
    rows.map((r) => r.id),
  );
  return rows.map((r) => ruleView(box, r, counts.get(r.id)!));
}

async function ruleOrThrow(db: PrismaClient, id: string): Promise<NotificationRule> {
  const r = await db.notificationRule.findUnique({ where: { id } });
  if (!r)
    throw new AppError('NOT_FOUND', `notification rule ${id} not found`, {
      userMessage: 'notification rule not found',
    });
  return r;
}

export async function updateRule(
  db: PrismaClient,
  actor: Actor,
  id: string,
  body: UpdateNotificationRule,
  box: SecretBox,
  now: Date = new Date(),
): Promise<NotificationRuleRow> {
  requireUser(actor, 'notification:manage');
  const input = parseInput(UpdateNotificationRule, body, 'notification rule');
  await ruleOrThrow(db, id);
  const row = await db.$transaction(async (tx) => {
    const r = await tx.notificationRule.update({
      where: { id },
      data: { enabled: input.enabled, updatedAt: now },
    });
    await appendAudit(
      tx,
      {
        actor,
        action: 'notification_rule.update',
        subjectType: 'notification_rule',
        subjectId: id,
        data: { enabled: input.enabled },
      },
      now,
    );
    return r;
  });
  return ruleView(box, row, (await countsOf(db, [id])).get(id)!);
}

export async function deleteRule(db: PrismaClient, actor: Actor, id: string, now: Date = new Date()) {
  requireUser(actor, 'notification:manage');
  const rule = await ruleOrThrow(db, id);
  await db.$transaction(async (tx) => {
    await tx.notificationRule.delete({ where: { id } });
    await appendAudit(
      tx,
      {
        actor,
        action: 'notification_rule.delete',
        subjectType: 'notification_rule',
        subjectId: id,
        data: { name: rule.name },
      },
      now,
    );
  });
  return { deleted: true as const };
}

function deliveryView(o: NotificationOutbox): NotificationDeliveryRow {
  const payload = o.payload as { request?: { id?: unknown } | null };
  return {
    id: o.id,
    ruleId: o.ruleId,
    kind: NotificationEvent.parse(o.kind),
    status: o.status === 'delivered' ? 'delivered' : o.status === 'failed' ? 'failed' : 'pending',
    attempts: o.attempts,
    lastStatus: o.lastStatus,
    lastError: o.lastError,
    createdAt: o.createdAt.toISOString(),
    nextAttemptAt: o.nextAttemptAt.toISOString(),
    deliveredAt: o.deliveredAt?.toISOString() ?? null,
    requestId: typeof payload.request?.id === 'string' ? payload.request.id : null,
  };
}

/** A rule's delivery log, newest first. */
export async function listDeliveries(
  db: PrismaClient,
  actor: Actor,
  ruleId: string,
  query: { status?: 'pending' | 'delivered' | 'failed'; limit?: number } = {},
): Promise<NotificationDeliveryRow[]> {
  requireUser(actor, 'notification:manage');
  await ruleOrThrow(db, ruleId);
  const rows = await db.notificationOutbox.findMany({
    where: { ruleId, ...(query.status ? { status: query.status } : {}) },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: query.limit ?? 100,
  });
  return rows.map(deliveryView);
}

// ---- delivery ---------------------------------------------------------------------------------------------

/** The signature of a generic webhook body: hex HMAC-SHA256 over `<timestamp>.<body>`. */
export function signBody(secret: string, timestamp: string, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest('hex');
}

/** Where an event that is not a request's points: the audit log at the break, the fleet page. */
function linkOf(stored: Omit<NotificationPayload, 'id'>, publicUrl: string): string | undefined {
  if (stored.event === 'audit.verify_failed') return `${publicUrl}/audit`;
  if (stored.event === 'agent.lost') return `${publicUrl}/fleet`;
  return undefined;
}

/** The body as sent: the stored event with its delivery id and the request's deep link. Same on every retry. */
export function payloadOf(o: NotificationOutbox, publicUrl: string): NotificationPayload {
  const stored = o.payload as Omit<NotificationPayload, 'id'>;
  const link = linkOf(stored, publicUrl);
  return NotificationPayload.parse({
    id: o.id,
    ...stored,
    request: stored.request && {
      ...stored.request,
      url: `${publicUrl}/requests/${encodeURIComponent(stored.request.id)}`,
    },
    ...(link ? { link } : {}),
  });
}

const EVENT_TITLE: Record<NotificationEvent, string> = {
  'request.filed': 'Request filed',
  'request.awaiting_approval': 'Request awaiting approval',
  'request.approved': 'Request approved',
  'request.rejected': 'Request rejected',
  'request.finished': 'Request finished',
  'break_glass.used': 'Break-glass used',
  'agent.lost': 'Agent lost',
  'audit.verify_failed': 'Audit chain verification FAILED',
};

/** The line under the title for events that are not a request's. */
function summaryOf(p: NotificationPayload): string | null {
  const d = p.data as Record<string, unknown>;
  if (p.event === 'agent.lost')
    return `${String(d.name ?? d.subjectId ?? 'an agent')} last seen ${String(d.lastSeenAt ?? '?')}`;
  if (p.event === 'audit.verify_failed')
    return `first bad event ${String(d.brokenAt ?? '?')}: ${String(d.reason ?? '')}`;
  return null;
}

/** Slack's `mrkdwn` control characters in user text (a reason) are escaped, so it cannot forge links. */
const slackEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A Slack incoming-webhook message: a header line, the reason, and a button linking to the request. */
export function slackMessage(p: NotificationPayload) {
  const r = p.request;
  const title = `${EVENT_TITLE[p.event]}${r ? `: ${r.scriptId ?? 'custom code'} (${r.state})` : ''}`;
  const lines = [`*${slackEscape(title)}*`];
  if (r) lines.push(`> ${slackEscape(r.reason.slice(0, 500))}`);
  const summary = summaryOf(p);
  if (summary) lines.push(`> ${slackEscape(summary.slice(0, 500))}`);
  lines.push(`by ${slackEscape(p.actor.name)}`);
  const url = r?.url ?? p.link;
  return {
    text: url ? `${title} — ${url}` : title,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: lines.join('\n') } },
      ...(url
        ? [
            {
              type: 'actions',
              elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open in Pyreach' }, url }],
            },
          ]
        : []),
    ],
  };
}

/** Claims up to `limit` due deliveries of enabled rules for `owner` until now + leaseMs; attempts counted here. */
export async function claimDue(
  db: PrismaClient,
  owner: string,
  now: Date,
  leaseMs: number,
  limit: number,
): Promise<(NotificationOutbox & { rule: NotificationRule })[]> {
  const claimed = await db.$queryRawUnsafe<{ id: string }[]>(
    `UPDATE "notification_outbox" SET "leaseOwner" = $1, "leaseUntil" = $2::timestamptz, "attempts" = "attempts" + 1
      WHERE "id" IN (
        SELECT o."id" FROM "notification_outbox" o JOIN "notification_rule" r ON r."id" = o."ruleId" AND r."enabled"
         WHERE o."status" = 'pending' AND o."nextAttemptAt" <= $3::timestamptz
           AND (o."leaseUntil" IS NULL OR o."leaseUntil" < $3::timestamptz)
         ORDER BY o."nextAttemptAt", o."id" LIMIT $4
         FOR UPDATE OF o SKIP LOCKED)
      RETURNING "id"`,
    owner,
    new Date(now.getTime() + leaseMs).toISOString(),
    now.toISOString(),
    limit,
  );
  if (claimed.length === 0) return [];
  return db.notificationOutbox.findMany({
    where: { id: { in: claimed.map((c) => c.id) } },
    include: { rule: true },
    orderBy: [{ nextAttemptAt: 'asc' }, { id: 'asc' }],
  });
}

/** Backoff before attempt `attempts + 1`: backoffMs · 2^(attempts-1), capped, ±20 % jitter. */
export function backoff(cfg: Pick<NotifyConfig, 'backoffMs' | 'backoffMaxMs'>, attempts: number): number {
  const base = Math.min(cfg.backoffMs * 2 ** Math.max(0, attempts - 1), cfg.backoffMaxMs);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export type DeliveryOutcome = 'delivered' | 'retry' | 'failed' | 'lost-lease';

/** Sends one claimed delivery and records what happened (only while `owner` still holds its lease). */
export async function deliverOne(
  db: PrismaClient,
  o: NotificationOutbox & { rule: NotificationRule },
  owner: string,
  cfg: NotifyConfig,
  clock: () => Date = () => new Date(),
): Promise<DeliveryOutcome> {
  const payload = payloadOf(o, cfg.publicUrl);
  let status: number | null = null;
  let error: string | null = null;
  let permanent = false;
  try {
    let dest: { url: string; secret: string };
    try {
      dest = unseal(cfg.box, o.rule);
    } catch {
      throw new DestinationRefused(
        'the rule cannot be unsealed with this PYREACH_NOTIFY_KEY_FILE (another key?); recreate the rule',
      );
    }
    const addresses = await checkDestination(dest.url, cfg.allow, cfg.resolve);
    const ts = String(Math.floor(clock().getTime() / 1000));
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'pyreach-notifications/1',
      [NOTIFICATION_IDEMPOTENCY_HEADER]: o.id,
      [NOTIFICATION_EVENT_HEADER]: payload.event,
    };
    let body: string;
    if (o.rule.channel === 'slack') body = JSON.stringify(slackMessage(payload));
    else {
      body = JSON.stringify(payload);
      headers[NOTIFICATION_TIMESTAMP_HEADER] = ts;
      headers[NOTIFICATION_SIGNATURE_HEADER] = `sha256=${signBody(dest.secret, ts, body)}`;
    }
    const res = await postTo(dest.url, addresses, headers, body, cfg.timeoutMs);
    status = res.status;
    if (res.status >= 300 && res.status < 400) {
      error = `answered ${res.status}: redirects are not followed`;
      permanent = true;
    } else if (res.status < 200 || res.status >= 300)
      error = `answered ${res.status}${res.body ? `: ${res.body.slice(0, 200)}` : ''}`;
  } catch (err) {
    if (err instanceof DestinationRefused) {
      error = `refused: ${err.message}`;
      permanent = true;
    } else error = err instanceof Error ? err.message : String(err);
  }
  const now = clock();
  const mine = { id: o.id, leaseOwner: owner, status: 'pending' };
  let outcome: DeliveryOutcome;
  let data: Parameters<PrismaClient['notificationOutbox']['updateMany']>[0]['data'];
  if (error === null) {
    outcome = 'delivered';
    data = { status: 'delivered', deliveredAt: now, lastStatus: status, lastError: null, leaseUntil: null };
  } else if (permanent || o.attempts >= cfg.maxAttempts) {
    outcome = 'failed';
    data = { status: 'failed', lastStatus: status, lastError: error.slice(0, 1000), leaseUntil: null };
  } else {
    outcome = 'retry';
    data = {
      lastStatus: status,
      lastError: error.slice(0, 1000),
      leaseUntil: null,
      nextAttemptAt: new Date(now.getTime() + backoff(cfg, o.attempts)),
    };
  }
  const r = await db.notificationOutbox.updateMany({ where: mine, data });
  return r.count === 1 ? outcome : 'lost-lease';
}

/** One worker pass: claims what is due and delivers it, `concurrency` at a time. Returns how many it handled. */
export async function deliverDue(
  db: PrismaClient,
  owner: string,
  cfg: NotifyConfig,
  clock: () => Date = () => new Date(),
  opts: { limit?: number; concurrency?: number } = {},
): Promise<{ handled: number; outcomes: DeliveryOutcome[] }> {
  const due = await claimDue(db, owner, clock(), cfg.leaseMs, opts.limit ?? 20);
  const outcomes: DeliveryOutcome[] = [];
  const queue = [...due];
  const workers = Array.from({ length: Math.min(opts.concurrency ?? 4, queue.length) }, async () => {
    for (let o = queue.shift(); o; o = queue.shift())
      outcomes.push(await deliverOne(db, o, owner, cfg, clock));
  });
  await Promise.all(workers);
  return { handled: due.length, outcomes };
}
