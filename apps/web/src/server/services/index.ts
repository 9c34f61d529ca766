/**
 * The services bound to one database, one clock and the ports they need: what routes, gateways and the
 * dispatcher call. Each entry is one call of a service module (which stays a plain function of (db, actor,
 * input, now), tested on its own); mutating ones return { result, effects } for the Publisher. Built once by
 * the composition root (../control-plane.ts) before anything that calls it.
 */
import { SCRIPTS, describeScript } from '@pyreach/scripts';
import {
  Role,
  ScriptSummary,
  type CreateApiToken,
  type CreateJoinToken,
  type SetAgentNamespaceLabels,
  type CreateNotificationRule,
  type UpdateNotificationRule,
  type CreateRequest,
  type CreateServiceAccount,
  type CreateUser,
  type CloseAfterReview,
  type CreateBreakGlassGrant,
  type DecideGovernanceChange,
  type InspectProcessBody,
  type SetTemporaryPassword,
  type SetUserDisabled,
  type PolicyInput,
  type TargetsInput,
  type UpdateRequest,
} from '@pyreach/protocol/api';
import type { EnrollRequest, Heartbeat, JobEvent } from '@pyreach/protocol/agent';
import type { Failure } from '@pyreach/protocol/common';
import type { InventoryDelta, InventorySnapshot } from '@pyreach/protocol/inventory';
import type { KeyObject } from 'node:crypto';
import type { AuditProtection, PrismaClient } from '@pyreach/db';
import { userActor, type Actor } from './actor';
import * as agents from './agents';
import * as audit from './audit';
import * as auditAlert from './audit-alert';
import * as checkpoints from './audit-checkpoint';
import * as breakGlass from './break-glass';
import * as executions from './executions';
import * as governance from './governance';
import { APPLIERS } from './governance-apply';
import { outcome, type Outcome } from './effects';
import * as inspect from './inspect';
import * as inventory from './inventory';
import * as preflight from './preflight';
import * as jobs from './jobs';
import * as metrics from './metrics';
import * as namespaceLabels from './namespace-labels';
import * as notifications from './notifications';
import { NO_ALLOW_LIST } from './notifications-net';
import * as policy from './policy';
import * as requests from './requests';
import * as restore from './restore';
import * as serviceAccounts from './service-accounts';
import * as sessions from './sessions';
import type { SigningKeyPair } from './signing';
import * as users from './users';
import { Batcher } from '../batcher';

/** Which agents hold a connection to this process (kept by the agent gateway; read for `connectedHere`). */
export interface Presence {
  isConnectedHere(agentId: string): boolean;
  /** The job protocol version the agent announced on its connection here (meaningful only when connected here). */
  versionOf(agentId: string): 1 | 2;
}

/** What the services need from the auth library. */
export interface AuthPort {
  getSession(headers: Headers): Promise<sessions.SessionRecord | null>;
  hashPassword: users.HashPassword;
}

export interface ServiceDeps {
  prisma: PrismaClient;
  /** A batch of agent reports the database refused as a whole (then applied one by one): for the log. */
  reportBatchRefused?: (err: unknown, reports: number) => void;
  dbKind: 'pglite' | 'postgres';
  /** Whether the app's database role could rewrite the audit trail (checked at open). */
  auditProtection: AuditProtection;
  signing: SigningKeyPair;
  /** Audit checkpoints: the signing key (a file, not the database), keys verify trusts, off-box sinks. */
  checkpoints: {
    key: checkpoints.CheckpointKey;
    trusted: readonly KeyObject[];
    sinks: readonly checkpoints.CheckpointSink[];
    /** The file sink, read back by verify (a checkpoint deleted from the database still counts). */
    sinkFile?: string;
    sinkFailed(sink: string, err: unknown): void;
    /** A verification found the chain broken (every time, recorded or not): for the log, outside the database. */
    verifyFailed?(failure: {
      brokenAt: string;
      reason: string;
      source: 'periodic' | 'request';
      alert: auditAlert.VerifyAlert | null;
      error?: unknown;
    }): void;
  };
  /** Signs vote attestations; a key file next to the signing key, never in the database. */
  attestation: SigningKeyPair;
  auth: AuthPort;
  presence: Presence;
  clock: () => Date;
  config: {
    reauthMinutes: number;
    /** Roles allowed `process:inspect` on this control plane (PYREACH_INSPECT_ROLES; empty: off). */
    inspectRoles?: readonly string[];
    loginRateLimit: number;
    agentGraceSeconds: number;
    /** An agent gone this long is declared lost (`agent.lost`, notified once); 0 or unset: never. */
    agentLostAfterSeconds?: number;
    /** Agent reports per batch at most (PYREACH_REPORT_BATCH_MAX; default REPORT_BATCH_MAX). */
    reportBatchMax?: number;
    publicUrl: string;
    /** How people sign in: whether a password is accepted, and the SSO provider's id (null: no SSO). */
    signIn?: { password: boolean; ssoProviderId: string | null };
    /** Notification delivery (allow-list, lease, retries); defaults: DEFAULT_NOTIFY, nothing private allowed. */
    notifications: Partial<Omit<notifications.NotifyConfig, 'publicUrl' | 'box'>> &
      Pick<notifications.NotifyConfig, 'box'>;
  };
}

/**
 * Agent reports per batch (issue 15). Reports that arrive while a batch commits wait in memory, in arrival order,
 * and go together in the next one: one transaction and one audit append for a wave of results instead of a
 * transaction each behind the audit lock — and one pool connection, so a fan-out finishing never starves
 * dispatch and the API.
 */
const REPORT_BATCH_MAX = 500;

type AuditQueryInput = Omit<audit.AuditQuery, 'from' | 'to'> & { from?: string; to?: string };

const withDates = <Q extends { from?: string; to?: string }>({ from, to, ...rest }: Q) => ({
  ...rest,
  ...(from ? { from: new Date(from) } : {}),
  ...(to ? { to: new Date(to) } : {}),
});

/** `{ request }` around a service's result, effects kept: the API's envelope for one record. */
const named = <K extends string, T>(key: K, o: Outcome<T>): Outcome<Record<K, T>> => ({
  result: { [key]: o.result } as Record<K, T>,
  effects: o.effects,
});

export function createServices(d: ServiceDeps) {
  const { prisma: db, clock, presence } = d;
  // The library's summaries, parsed once with the API's shape (their parameter schemas are generated JSON Schema).
  const scripts = ScriptSummary.array().parse(SCRIPTS.map(describeScript));
  const reports = new Batcher<executions.JobReport, Outcome<executions.Applied>>(
    async (batch) =>
      (
        await executions.applyJobEvents(db, batch, {
          now: clock(),
          ...(d.reportBatchRefused ? { onBatchRefused: d.reportBatchRefused } : {}),
        })
      ).map((v) => (v.ok ? { ok: true, value: v.outcome } : v)),
    d.config.reportBatchMax ?? REPORT_BATCH_MAX,
  );
  const startedAt = clock();
  const here = <A extends { id: string }>(a: A) => ({ ...a, connectedHere: presence.isConnectedHere(a.id) });
  const agentActor = async (agentId: string): Promise<Actor> => {
    const a = await db.agent.findUnique({ where: { id: agentId }, select: { name: true } });
    return { type: 'agent', id: agentId, name: a?.name ?? agentId };
  };

  const notify: notifications.NotifyConfig = {
    ...notifications.DEFAULT_NOTIFY,
    allow: NO_ALLOW_LIST,
    ...d.config.notifications,
    publicUrl: d.config.publicUrl,
  };

  const fingerprintKey = auditAlert.fingerprintKeyOf(d.checkpoints.key.privateKey);
  const protection = d.auditProtection;
  const protectionWord =
    d.dbKind === 'pglite'
      ? 'pglite'
      : protection.protected
        ? 'protected'
        : `unprotected: ${protection.reasons.join('; ')}`;
  /** Signs the head when it moved since the last checkpoint and copies a new checkpoint to every sink. */
  const checkpoint = async () => {
    const r = await checkpoints.takeCheckpoint(db, d.checkpoints.key, clock());
    const c = r.checkpoint;
    if (r.created && c) {
      await Promise.all(
        d.checkpoints.sinks.map((s) =>
          s.write(c).catch((err: unknown) => d.checkpoints.sinkFailed(s.name, err)),
        ),
      );
    }
    return r;
  };

  return {
    system: {
      async health() {
        await db.$queryRaw`SELECT 1`;
        const last = await checkpoints.latestCheckpoint(db);
        return {
          db: d.dbKind,
          uptimeSeconds: Math.round((clock().getTime() - startedAt.getTime()) / 1000),
          audit: {
            protection: protectionWord,
            role: protection.role,
            reasons: protection.reasons,
            lastCheckpoint: last ? { seq: last.seq, at: last.at } : null,
          },
        };
      },
      /** Liveness: this process answers; nothing else is asked. */
      live: () => ({
        alive: true as const,
        uptimeSeconds: Math.round((clock().getTime() - startedAt.getTime()) / 1000),
      }),
      /** Readiness' database check: one round trip. */
      ping: () => db.$queryRaw`SELECT 1`,
      publicUrl: d.config.publicUrl,
      /** What a Prometheus scrape reads from the database (server/metrics.ts). */
      metrics: () => metrics.metricsSnapshot(db, clock()),
    },

    sessions: {
      async fromHeaders(headers: Headers) {
        return sessions.sessionUserOf(await d.auth.getSession(headers));
      },
      async fromCookie(cookie: string | undefined) {
        if (!cookie) return null;
        return sessions.sessionUserOf(await d.auth.getSession(new Headers({ cookie })));
      },
      describe: async (user: sessions.SessionUser) => ({
        ...sessions.describeSession(user, d.config.reauthMinutes, clock()),
        reauth: await sessions.reauthMethod(
          db,
          user.id,
          d.config.signIn ?? { password: true, ssoProviderId: null },
        ),
      }),
      checkLoginRate: (who: { ip: string; email: string }) =>
        sessions.checkLoginRate(db, who, d.config.loginRateLimit, clock().getTime()),
      recordSignIn: (userId: string, ip: string | null) => users.recordSignIn(db, userId, ip),
    },

    users: {
      list: () => users.listUsers(db),
      create: async (actor: Actor, body: CreateUser) =>
        outcome(await users.createUser(db, actor, body, d.auth.hashPassword, clock(), d.attestation)),
      async setRole(actor: Actor, userId: string, role: string) {
        const { user: u, change } = await users.setRole(db, actor, userId, role, d.attestation, clock());
        // The user's open /ui sockets carry the old role: closed, they reconnect with the new one (a pending
        // promotion changed nothing yet).
        return outcome({ user: { id: u.id, role: Role.parse(u.role) }, change }, [
          change?.state !== 'pending' && { kind: 'sessions-closed', userId: u.id, reason: 'role changed' },
        ]);
      },
      setDisabled: (actor: Actor, userId: string, body: SetUserDisabled) =>
        users.setDisabled(db, actor, userId, body),
      setTemporaryPassword: (actor: Actor, userId: string, body: SetTemporaryPassword) =>
        users.setTemporaryPassword(db, actor, userId, body.password, d.auth.hashPassword),
      passwordChanged: (user: sessions.SessionUser) => users.passwordChanged(db, userActor(user)),
      recordAuthEvent: (
        event:
          | { kind: 'sign_in_failed'; email: string; ip: string | null; status: number }
          | { kind: 'sign_out'; user: sessions.SessionUser; ip: string | null },
      ) =>
        users.recordAuthEvent(
          db,
          event.kind === 'sign_out'
            ? { kind: 'sign_out', actor: userActor(event.user), ip: event.ip }
            : event,
        ),
      recordDenied: (actor: Actor, denied: Parameters<typeof users.recordDenied>[2]) =>
        users.recordDenied(db, actor, denied),
      names: async (ids: string[]) => ({ users: await users.namesOf(db, ids) }),
      ensure: (input: CreateUser) => users.ensureUser(db, input, d.auth.hashPassword),
    },

    serviceAccounts: {
      authenticate: (token: string) => serviceAccounts.authenticateToken(db, token, clock()),
      list: async (actor: Actor) => ({
        serviceAccounts: await serviceAccounts.listServiceAccounts(db, actor, clock()),
      }),
      create: async (actor: Actor, body: CreateServiceAccount) =>
        outcome({ serviceAccount: await serviceAccounts.createServiceAccount(db, actor, body, clock()) }),
      listTokens: async (actor: Actor, id: string) => ({
        tokens: await serviceAccounts.listApiTokens(db, actor, id, clock()),
      }),
      async createToken(actor: Actor, id: string, body: CreateApiToken) {
        const t = await serviceAccounts.createApiToken(db, actor, id, body, clock());
        return outcome({ token: t.token, tokenId: t.tokenId, expiresAt: t.expiresAt.toISOString() });
      },
      async revokeToken(actor: Actor, tokenId: string) {
        const token = await serviceAccounts.revokeApiToken(db, actor, tokenId, clock());
        return outcome({ token }, [{ kind: 'token-revoked', tokenId }]);
      },
    },

    agents: {
      list: async (filter: { status?: 'online' | 'offline'; includeRevoked?: boolean }) => ({
        agents: (await agents.listAgents(db, filter, d.attestation)).map(here),
      }),
      get: async (id: string) => ({ agent: here(await agents.getAgent(db, id, d.attestation)) }),
      async revoke(actor: Actor, id: string, reason: string) {
        const r = await agents.revokeAgent(db, actor, id, reason, clock());
        return outcome({ agent: r.result }, r.effects);
      },
      async createJoinToken(actor: Actor, input: CreateJoinToken) {
        const t = await agents.createJoinToken(db, actor, input, clock(), d.attestation);
        return outcome({
          joinToken: {
            id: t.id,
            token: t.token,
            expiresAt: t.expiresAt.toISOString(),
            labels: t.labels,
            namespaceLabels: t.namespaceLabels,
            maxUses: t.maxUses,
            hostPattern: t.hostPattern,
          },
          change: t.change,
        });
      },
      async setNamespaceLabels(actor: Actor, id: string, body: SetAgentNamespaceLabels) {
        const r = await namespaceLabels.setAgentNamespaceLabels(db, actor, id, body, d.attestation, clock());
        return outcome(
          { agent: here(await agents.getAgent(db, id, d.attestation)), change: r.result.change },
          r.effects,
        );
      },
      listJoinTokens: async (actor: Actor) => ({
        joinTokens: await agents.listJoinTokens(db, actor, clock()),
      }),
      async revokeJoinToken(actor: Actor, id: string) {
        const r = await agents.revokeJoinToken(db, actor, id, clock());
        return outcome({ joinToken: r.result }, r.effects);
      },
      revokeJoinTokenAgents: (actor: Actor, id: string, reason: string) =>
        agents.revokeJoinTokenAgents(db, actor, id, reason, clock()),
      async enroll(input: EnrollRequest) {
        const r = await agents.enrollAgent(db, input, clock(), d.attestation);
        return outcome(
          { agentId: r.result.id, signingPublicKey: d.signing.publicKeyPem, signingKeyId: d.signing.keyId },
          r.effects,
        );
      },
      /** For the /agents handshake: the key to check the challenge against, and whether it was revoked. */
      credentials: (agentId: string) =>
        db.agent.findUnique({
          where: { id: agentId },
          select: { id: true, publicKey: true, revokedAt: true },
        }),
      /** The first failed /agents handshake of a source's window (the gateway aggregates the rest). */
      async authFailed(agentId: string | null, reason: string, ip: string | null) {
        const known = agentId
          ? await db.agent.findUnique({ where: { id: agentId }, select: { id: true } })
          : null;
        await audit.recordAudit(db, {
          actor: known && agentId ? await agentActor(agentId) : { type: 'system', name: 'agent-gateway' },
          action: 'agent.auth_failed',
          subjectType: 'agent',
          subjectId: agentId ?? undefined,
          data: { reason, ip },
        });
      },
      /** The rest of a source's window of failed handshakes: one event, however many attempts. */
      async authFailures(s: {
        source: string;
        count: number;
        firstAt: Date;
        lastAt: Date;
        reasons: Record<string, number>;
        agentIds: string[];
        windowSeconds: number;
      }) {
        await audit.recordAudit(db, {
          actor: { type: 'system', name: 'agent-gateway' },
          action: 'agent.auth_failed',
          subjectType: 'source',
          subjectId: s.source,
          data: {
            aggregated: true,
            source: s.source,
            count: s.count,
            firstAt: s.firstAt.toISOString(),
            lastAt: s.lastAt.toISOString(),
            reasons: s.reasons,
            agentIds: s.agentIds,
            windowSeconds: s.windowSeconds,
          },
        });
      },
      connected: (agentId: string, at: Date) => agents.markConnected(db, agentId, at),
      disconnected: (agentId: string, connectedAt: Date | null) =>
        agents.markDisconnected(db, agentId, clock(), connectedAt),
      heartbeat: (agentId: string, hb: Heartbeat) => agents.recordHeartbeat(db, agentId, hb, clock()),
    },

    fleet: {
      hosts: async (filter: { labels?: Record<string, string>; includeRevoked?: boolean }) => ({
        hosts: await inventory.listHosts(db, filter),
      }),
      processes: async (filter: inventory.ProcessFilter) => ({
        processes: await inventory.listProcesses(db, filter),
      }),
      /** `process:inspect`: a signed inspect job queued for the process's agent, audited (services/inspect.ts). */
      async inspect(actor: Actor, body: InspectProcessBody) {
        const started = await inspect.startInspection(
          db,
          actor,
          body,
          {
            signing: d.signing,
            agentVersionOf: (id) => (presence.isConnectedHere(id) ? presence.versionOf(id) : null),
            ...(d.config.inspectRoles ? { allowedRoles: d.config.inspectRoles } : {}),
          },
          clock(),
        );
        const view = await inspect.inspectionView(db, actor, started.result.jobId);
        return outcome({ inspection: view }, started.effects);
      },
      inspection: async (actor: Actor, id: string) => ({
        inspection: await inspect.inspectionView(db, actor, id),
      }),
      async preview({ limit, ...selector }: inventory.Selector & { limit?: number }) {
        const processes = await inventory.matchSelector(db, selector, { limit: limit ?? 1000 });
        return { count: processes.length, processes };
      },
      view: ({
        label,
        ...filter
      }: Omit<inventory.FleetFilter, 'labels'> & { label?: Record<string, string> }) =>
        inventory.fleetView(db, { ...filter, labels: label }, (id) => presence.isConnectedHere(id)),
      process: (id: string) =>
        inventory.processDetail(db, id, (agentId) => presence.isConnectedHere(agentId)),
      snapshot: (agentId: string, snap: InventorySnapshot) =>
        inventory.saveSnapshot(db, agentId, snap, clock()),
      delta: (agentId: string, delta: InventoryDelta) => inventory.applyDelta(db, agentId, delta, clock()),
    },

    scripts: {
      list: () => ({ scripts }),
    },

    requests: {
      async list(filter: {
        state?: string;
        requesterId?: string;
        review?: 'after';
        cursor?: string;
        limit?: number;
      }) {
        const page = await requests.listRequests(db, filter);
        return { requests: page.items, nextCursor: page.nextCursor };
      },
      get: async (id: string) => ({ request: await requests.getRequest(db, id) }),
      output: (id: string, executionId: string) => requests.executionOutput(db, id, executionId),
      create: async (actor: Actor, input: CreateRequest) =>
        named('request', await requests.createRequest(db, actor, input, clock(), d.attestation)),
      closeAfterReview: async (actor: Actor, id: string, body: CloseAfterReview) =>
        named('request', await breakGlass.closeAfterReview(db, actor, id, body, clock())),
      update: async (actor: Actor, id: string, patch: UpdateRequest) =>
        named('request', await requests.updateRequest(db, actor, id, patch, clock(), d.attestation)),
      cancel: async (actor: Actor, id: string, reason?: string) =>
        named('request', await requests.cancelRequest(db, actor, id, reason, clock())),
      /** The session's creation time is the moment of the last real sign-in: approving needs it to be recent. */
      review: async (
        actor: Actor,
        user: sessions.SessionUser,
        id: string,
        vote: { decision: 'approve' | 'reject'; comment?: string },
      ) =>
        named(
          'request',
          await requests.reviewRequest(db, actor, id, vote, {
            authenticatedAt: user.authenticatedAt,
            reauthWindowMinutes: d.config.reauthMinutes,
            now: clock(),
            attestation: d.attestation,
          }),
        ),
      /** The restore a change that undoes itself carries, per target (services/restore.ts). */
      restore: async (id: string) => ({ restore: await restore.restoreView(db, id, clock()) }),
      /** "Restore now": the approved restore at once, no new vote (the requester, an approver or an admin). */
      restoreNow: async (actor: Actor, id: string) =>
        named('restore', await restore.restoreNow(db, actor, id, clock())),
      previewPolicy: (input: { targets: TargetsInput; kind?: 'library' | 'custom'; scriptId?: string }) =>
        requests.previewPolicy(db, input, d.attestation),
      /** Each target's pre-flight verdict, evaluated now (services/preflight.ts). */
      preflight: async (id: string) => ({ preflight: await requests.requestPreflight(db, id, clock()) }),
      /** The new-request form's pre-flight panel: a draft's verdicts (nothing stored). */
      previewPreflight: async (input: Parameters<typeof preflight.previewPreflight>[1]) => ({
        preflight: await preflight.previewPreflight(db, input, clock()),
      }),
    },

    policies: {
      list: async () => ({ policies: await policy.listPolicies(db) }),
      get: async (id: string) => ({ policy: await policy.getPolicy(db, id) }),
      create: async (actor: Actor, input: PolicyInput) =>
        outcome(await policy.createPolicy(db, actor, input, d.attestation, clock())),
      update: async (actor: Actor, id: string, input: PolicyInput) =>
        outcome(await policy.updatePolicy(db, actor, id, input, d.attestation, clock())),
      remove: async (actor: Actor, id: string) =>
        outcome(await policy.deletePolicy(db, actor, id, d.attestation, clock())),
    },

    breakGlass: {
      list: async () => ({ grants: await breakGlass.listGrants(db, clock()) }),
      grant: (actor: Actor, body: CreateBreakGlassGrant) =>
        breakGlass.grantBreakGlass(db, actor, body, d.attestation, clock()),
      revoke: (actor: Actor, id: string) => breakGlass.revokeBreakGlass(db, actor, id, clock()),
      async mine(user: sessions.SessionUser) {
        const now = clock();
        const g = await breakGlass.activeGrant(db, d.attestation, user.id, now);
        return { grant: g ? breakGlass.grantRowOf(g, now) : null };
      },
    },

    governance: {
      list: async (filter: { open?: boolean }) => ({ changes: await governance.listChanges(db, filter) }),
      /** Like a vote: the session's creation time is the last real sign-in, and it must be recent. */
      decide: (
        actor: Actor,
        user: sessions.SessionUser,
        id: string,
        decision: 'confirm' | 'reject',
        body: DecideGovernanceChange,
      ) =>
        governance.decideChange(
          db,
          actor,
          id,
          { decision, comment: body.comment },
          {
            authenticatedAt: user.authenticatedAt,
            reauthWindowMinutes: d.config.reauthMinutes,
            now: clock(),
            attestation: d.attestation,
          },
          APPLIERS,
        ),
    },

    audit: {
      async query(q: AuditQueryInput) {
        const page = await audit.queryAudit(db, withDates(q));
        return { events: await audit.withSubjectNames(db, page.items), nextCursor: page.nextCursor };
      },
      /**
       * The chain, every checkpoint's signature, and the chain against the checkpoints (db + file sink). A
       * broken chain is recorded `audit.verify_failed` and notified, once per distinct break (audit-alert.ts).
       */
      async verify(source: 'periodic' | 'request' = 'request') {
        const extra = d.checkpoints.sinkFile ? await checkpoints.readFileSink(d.checkpoints.sinkFile) : [];
        const v = await checkpoints.verifyWithCheckpoints(db, d.checkpoints.trusted, { extra });
        const r = v.chain;
        if (!r.ok) {
          let alert: auditAlert.VerifyAlert | null = null;
          let error: unknown;
          try {
            alert = await auditAlert.recordVerifyFailure(
              db,
              fingerprintKey,
              r,
              { source, checkpoints: v.checkpoints },
              clock(),
            );
          } catch (err) {
            // The database may refuse (it is the thing that was tampered with): the log still says it.
            error = err;
          }
          d.checkpoints.verifyFailed?.({
            brokenAt: r.brokenAt.toString(),
            reason: r.reason,
            source,
            alert,
            ...(error ? { error } : {}),
          });
        }
        const latest = v.latest ? { seq: v.latest.seq, at: v.latest.at } : null;
        return r.ok
          ? {
              valid: true as const,
              count: r.count,
              lastSeq: r.lastSeq.toString(),
              checkpoints: v.checkpoints,
              lastCheckpoint: latest,
            }
          : {
              valid: false as const,
              count: r.count,
              brokenAt: r.brokenAt.toString(),
              reason: r.reason,
              checkpoints: v.checkpoints,
              ...(r.checkpointSeq !== undefined ? { checkpointSeq: r.checkpointSeq.toString() } : {}),
            };
      },
      checkpoint,
      /** Records who took the export (before the first byte), then streams the matching events. */
      async export(
        actor: Actor,
        {
          format,
          ...filter
        }: Omit<AuditQueryInput, 'cursor' | 'limit'> & {
          format: 'jsonl' | 'csv';
        },
      ) {
        await audit.recordAudit(db, { actor, action: 'audit.export', data: { format, ...filter } });
        // A checkpoint over the head that includes this export's own event; the export stops there, and (JSON
        // Lines) ends with it, so the file can be verified offline (verifyAuditExport).
        const { checkpoint: c } = await checkpoint();
        const chunks = audit.exportAudit(db, withDates(filter), format, {
          upTo: c ? BigInt(c.seq) : undefined,
          trailer: c && format === 'jsonl' ? `${JSON.stringify({ checkpoint: c })}\n` : undefined,
        });
        return { checkpoint: c, chunks };
      },
    },

    /** Notification rules (admins), their delivery logs, and the outbox worker's pass (services/notifications.ts). */
    notifications: {
      list: async (actor: Actor) => ({ rules: await notifications.listRules(db, actor, notify.box) }),
      create: async (actor: Actor, body: CreateNotificationRule) =>
        outcome(await notifications.createRule(db, actor, body, notify, clock())),
      update: async (actor: Actor, id: string, body: UpdateNotificationRule) =>
        outcome({ rule: await notifications.updateRule(db, actor, id, body, notify.box, clock()) }),
      remove: async (actor: Actor, id: string) =>
        outcome(await notifications.deleteRule(db, actor, id, clock())),
      deliveries: async (
        actor: Actor,
        id: string,
        query: { status?: 'pending' | 'delivered' | 'failed'; limit?: number },
      ) => ({ deliveries: await notifications.listDeliveries(db, actor, id, query) }),
      /** One pass of the outbox worker as `owner` (a replica id): claim what is due, deliver, record. */
      deliverDue: (owner: string) => notifications.deliverDue(db, owner, notify, clock),
      config: notify,
    },

    /** The agents' job reports and the dispatcher's database work (services/jobs.ts). */
    jobs: {
      /** One report, exactly once and in order; settles after the batch it joined committed. */
      apply: (agentId: string, ev: JobEvent) =>
        inspect.isInspectionJob(ev.jobId)
          ? inspect.recordInspectionEvent(db, agentId, ev, clock())
          : restore.isRestoreJob(ev.jobId)
            ? restore.recordRestoreEvent(db, agentId, ev, clock())
            : reports.submit({ agentId, ev }),
      /** A report refused for good (malformed, unstorable): audited against its job. */
      reportRefused: (
        agentId: string,
        report: { jobId: string; seq: number; type: string },
        refusal: { code: string; message: string },
      ) => executions.recordReportRefusal(db, agentId, report, refusal, clock()),
      nextWave: (connectedAgentIds: readonly string[], versionOf?: (agentId: string) => 1 | 2) =>
        jobs.nextWave(
          db,
          { signing: d.signing, attestation: d.attestation },
          connectedAgentIds,
          clock,
          versionOf,
        ),
      dispatchFailed: (job: Pick<jobs.PlannedJob, 'agentId' | 'jobId'>, failure: Failure) =>
        jobs.dispatchFailed(db, job, failure, clock()),
      housekeeping: (connectedAnywhere: (agentId: string) => Promise<boolean>) =>
        jobs.housekeeping(
          db,
          {
            connectedAnywhere,
            agentGraceSeconds: d.config.agentGraceSeconds,
            agentLostAfterSeconds: d.config.agentLostAfterSeconds ?? 0,
          },
          clock(),
        ),
    },
  };
}

export type Services = ReturnType<typeof createServices>;
