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
  type CreateJoinToken,
  type CreateRequest,
  type CreateUser,
  type SetTemporaryPassword,
  type SetUserDisabled,
  type PolicyInput,
  type TargetsInput,
  type UpdateRequest,
} from '@pyreach/protocol/api';
import type { EnrollRequest, Heartbeat, JobEvent } from '@pyreach/protocol/agent';
import type { Failure } from '@pyreach/protocol/common';
import type { InventoryDelta, InventorySnapshot } from '@pyreach/protocol/inventory';
import type { PrismaClient } from '@pyreach/db';
import { userActor, type Actor } from './actor';
import * as agents from './agents';
import * as audit from './audit';
import * as executions from './executions';
import { outcome, type Outcome } from './effects';
import * as inventory from './inventory';
import * as jobs from './jobs';
import * as policy from './policy';
import * as requests from './requests';
import * as sessions from './sessions';
import type { SigningKeyPair } from './signing';
import * as users from './users';
import { Gate } from '../gate';

/** Which agents hold a connection to this process (kept by the agent gateway; read for `connectedHere`). */
export interface Presence {
  isConnectedHere(agentId: string): boolean;
}

/** What the services need from the auth library. */
export interface AuthPort {
  getSession(headers: Headers): Promise<sessions.SessionRecord | null>;
  hashPassword: users.HashPassword;
}

export interface ServiceDeps {
  prisma: PrismaClient;
  dbKind: 'pglite' | 'postgres';
  signing: SigningKeyPair;
  auth: AuthPort;
  presence: Presence;
  clock: () => Date;
  config: {
    reauthMinutes: number;
    loginRateLimit: number;
    agentGraceSeconds: number;
    publicUrl: string;
  };
}

/**
 * Agent reports applied at once. Each is an audited transaction and appends serialise on the audit lock anyway,
 * so more at once only wait inside the database holding pool connections: a wave of a thousand results (a
 * fan-out finishing) would take the whole pool, starve dispatch and the API, and fail transactions that wait
 * too long for a connection. Beyond this they wait here, in memory, in arrival order.
 */
const APPLY_CONCURRENCY = 4;

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
  const applyGate = new Gate(APPLY_CONCURRENCY);
  const startedAt = clock();
  const here = <A extends { id: string }>(a: A) => ({ ...a, connectedHere: presence.isConnectedHere(a.id) });
  const agentActor = async (agentId: string): Promise<Actor> => {
    const a = await db.agent.findUnique({ where: { id: agentId }, select: { name: true } });
    return { type: 'agent', id: agentId, name: a?.name ?? agentId };
  };

  return {
    system: {
      async health() {
        await db.$queryRaw`SELECT 1`;
        return { db: d.dbKind, uptimeSeconds: Math.round((clock().getTime() - startedAt.getTime()) / 1000) };
      },
      publicUrl: d.config.publicUrl,
    },

    sessions: {
      async fromHeaders(headers: Headers) {
        return sessions.sessionUserOf(await d.auth.getSession(headers));
      },
      async fromCookie(cookie: string | undefined) {
        if (!cookie) return null;
        return sessions.sessionUserOf(await d.auth.getSession(new Headers({ cookie })));
      },
      describe: (user: sessions.SessionUser) =>
        sessions.describeSession(user, d.config.reauthMinutes, clock()),
      checkLoginRate: (who: { ip: string; email: string }) =>
        sessions.checkLoginRate(db, who, d.config.loginRateLimit, clock().getTime()),
      recordSignIn: (userId: string, ip: string | null) => users.recordSignIn(db, userId, ip),
    },

    users: {
      list: () => users.listUsers(db),
      create: async (actor: Actor, body: CreateUser) =>
        outcome({ user: await users.createUser(db, actor, body, d.auth.hashPassword, clock()) }),
      async setRole(actor: Actor, userId: string, role: string) {
        const u = await users.setRole(db, actor, userId, role);
        // The user's open /ui sockets carry the old role: closed, they reconnect with the new one.
        return outcome({ user: { id: u.id, role: Role.parse(u.role) } }, [
          { kind: 'sessions-closed', userId: u.id, reason: 'role changed' },
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

    agents: {
      list: async (filter: { status?: 'online' | 'offline'; includeRevoked?: boolean }) => ({
        agents: (await agents.listAgents(db, filter)).map(here),
      }),
      get: async (id: string) => ({ agent: here(await agents.getAgent(db, id)) }),
      async revoke(actor: Actor, id: string, reason: string) {
        const r = await agents.revokeAgent(db, actor, id, reason, clock());
        return outcome({ agent: r.result }, r.effects);
      },
      async createJoinToken(actor: Actor, input: CreateJoinToken) {
        const t = await agents.createJoinToken(db, actor, input, clock());
        return outcome({
          joinToken: { id: t.id, token: t.token, expiresAt: t.expiresAt.toISOString(), labels: t.labels },
        });
      },
      async enroll(input: EnrollRequest) {
        const r = await agents.enrollAgent(db, input, clock());
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
      async authFailed(agentId: string, reason: string, ip: string | null) {
        const known = await db.agent.findUnique({ where: { id: agentId }, select: { id: true } });
        await audit.recordAudit(db, {
          actor: known ? await agentActor(agentId) : { type: 'system', name: 'agent-gateway' },
          action: 'agent.auth_failed',
          subjectType: 'agent',
          subjectId: agentId,
          data: { reason, ip },
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
      async preview({ limit, ...selector }: inventory.Selector & { limit?: number }) {
        const processes = await inventory.matchSelector(db, selector, { limit: limit ?? 1000 });
        return { count: processes.length, processes };
      },
      view: async (filter: { includeRevoked?: boolean }) => ({
        hosts: await inventory.fleetView(db, filter, (id) => presence.isConnectedHere(id)),
      }),
      snapshot: (agentId: string, snap: InventorySnapshot) =>
        inventory.saveSnapshot(db, agentId, snap, clock()),
      delta: (agentId: string, delta: InventoryDelta) => inventory.applyDelta(db, agentId, delta, clock()),
    },

    scripts: {
      list: () => ({ scripts }),
    },

    requests: {
      async list(filter: { state?: string; requesterId?: string; cursor?: string; limit?: number }) {
        const page = await requests.listRequests(db, filter);
        return { requests: page.items, nextCursor: page.nextCursor };
      },
      get: async (id: string) => ({ request: await requests.getRequest(db, id) }),
      create: async (actor: Actor, input: CreateRequest) =>
        named('request', await requests.createRequest(db, actor, input, clock())),
      update: async (actor: Actor, id: string, patch: UpdateRequest) =>
        named('request', await requests.updateRequest(db, actor, id, patch, clock())),
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
          }),
        ),
      previewPolicy: (input: { targets: TargetsInput; kind?: 'library' | 'custom' }) =>
        requests.previewPolicy(db, input),
    },

    policies: {
      list: async () => ({ policies: await policy.listPolicies(db) }),
      get: async (id: string) => ({ policy: await policy.getPolicy(db, id) }),
      create: async (actor: Actor, input: PolicyInput) =>
        outcome({ policy: await policy.createPolicy(db, actor, input) }),
      update: async (actor: Actor, id: string, input: PolicyInput) =>
        outcome({ policy: await policy.updatePolicy(db, actor, id, input) }),
      async remove(actor: Actor, id: string) {
        await policy.deletePolicy(db, actor, id);
        return outcome({ deleted: id });
      },
    },

    audit: {
      async query(q: AuditQueryInput) {
        const page = await audit.queryAudit(db, withDates(q));
        return { events: page.items, nextCursor: page.nextCursor };
      },
      async verify() {
        const r = await audit.verifyAuditChain(db);
        return r.ok
          ? { valid: true as const, count: r.count, lastSeq: r.lastSeq.toString() }
          : { valid: false as const, count: r.count, brokenAt: r.brokenAt.toString(), reason: r.reason };
      },
      /** Records who took the export (before the first byte), then streams the matching events. */
      async export(
        actor: Actor,
        {
          format,
          ...filter
        }: Omit<AuditQueryInput, 'cursor' | 'limit' | 'text'> & {
          format: 'jsonl' | 'csv';
        },
      ) {
        await audit.recordAudit(db, { actor, action: 'audit.export', data: { format, ...filter } });
        return audit.exportAudit(db, withDates(filter), format);
      },
    },

    /** The agents' job reports and the dispatcher's database work (services/jobs.ts). */
    jobs: {
      /** One report, exactly once and in order (at most APPLY_CONCURRENCY at once). */
      apply: (agentId: string, ev: JobEvent) =>
        applyGate.run(() => executions.applyJobEvent(db, agentId, ev, { now: clock() })),
      nextWave: (connectedAgentIds: readonly string[]) =>
        jobs.nextWave(db, d.signing, connectedAgentIds, clock),
      dispatchFailed: (job: Pick<jobs.PlannedJob, 'agentId' | 'jobId'>, failure: Failure) =>
        jobs.dispatchFailed(db, job, failure, clock()),
      housekeeping: (connectedAnywhere: (agentId: string) => Promise<boolean>) =>
        jobs.housekeeping(db, { connectedAnywhere, agentGraceSeconds: d.config.agentGraceSeconds }, clock()),
    },
  };
}

export type Services = ReturnType<typeof createServices>;
