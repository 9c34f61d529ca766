/**
 * Binds the transport (routes, gateways, dispatcher) to the services in ./services. The only module that knows
 * both sides. Routes reach the bound services through getAppContext().services and import only their types,
 * so Next.js never bundles the database client.
 */
import type { Database } from '@pyreach/db';
import type { JobEvent } from '@pyreach/protocol/agent';
import * as actorSvc from './services/actor';
import * as agentsSvc from './services/agents';
import * as auditSvc from './services/audit';
import * as inventorySvc from './services/inventory';
import { SCRIPTS, describeScript, getScript, type ScriptSummary } from '@pyreach/scripts';
import * as usersSvc from './services/users';
import * as policySvc from './services/policy';
import { loadOrCreateSigningKey, type SigningKeyPair } from './services/signing';
import type { DispatchPorts } from './dispatcher';
import { createJobEventPorts } from './wiring-jobs';
import * as requestsSvc from './services/requests';
import type { AgentGatewayPorts } from './gateway/agents';
import type { UiGatewayPorts, UiUser } from './gateway/ui';
import type { SessionUser } from './http/handler';
import type { Runtime } from './runtime';

export type Actor = actorSvc.Actor;

export interface Services {
  can(role: string, action: string): boolean;
  /** The audit actor for a signed-in person. */
  actorOf(user: SessionUser): Actor;
  signing: SigningKeyPair;
  actor: typeof actorSvc;
  agents: typeof agentsSvc;
  audit: typeof auditSvc;
  inventory: typeof inventorySvc;
  users: UsersPort;
  policy: typeof policySvc;
  requests: typeof requestsSvc;
  scripts(): ScriptSummary[];
  /** Source of a library script, or null when there is no such script. */
  scriptSource(id: string): string | null;
  recordSignIn(userId: string, ip: string | null): Promise<void>;
  agentPorts(): AgentGatewayPorts;
  uiPorts(): UiGatewayPorts;
  dispatchPorts(): DispatchPorts;
  jobEventApplied(agentId: string, ev: JobEvent, outcome: 'applied' | 'duplicate'): void;
}

function can(role: string, action: string): boolean {
  return (
    actorSvc.isRole(role) &&
    (actorSvc.ACTIONS as readonly string[]).includes(action) &&
    actorSvc.can(role, action as actorSvc.Action)
  );
}

export async function createServices(rt: Runtime): Promise<Services> {
  const prisma = rt.db.prisma;
  const signing = await loadOrCreateSigningKey({ keyFile: rt.env.signingKeyFile, db: prisma });
  const agentActor = async (agentId: string): Promise<Actor> => {
    const a = await prisma.agent.findUnique({ where: { id: agentId }, select: { name: true } });
    return { type: 'agent', id: agentId, name: a?.name ?? agentId };
  };

  const agentPorts: AgentGatewayPorts = {
    getAgent: async (agentId) =>
      prisma.agent.findUnique({
        where: { id: agentId },
        select: { id: true, publicKey: true, revokedAt: true },
      }),
    authFailed: async (agentId, reason, ip) => {
      const known = await prisma.agent.findUnique({ where: { id: agentId }, select: { id: true } });
      await auditSvc.recordAudit(prisma, {
        actor: known ? await agentActor(agentId) : { type: 'system', name: 'agent-gateway' },
        action: 'agent.auth_failed',
        subjectType: 'agent',
        subjectId: agentId,
        data: { reason, ip: ip ?? null },
      });
    },
    connected: async (agentId, info) => {
      await agentsSvc.markConnected(prisma, agentId, info.at);
    },
    disconnected: (agentId, info) =>
      agentsSvc.markDisconnected(prisma, agentId, new Date(), info.connectedAt),
    heartbeat: (agentId, hb) => agentsSvc.recordHeartbeat(prisma, agentId, hb),
    snapshot: async (agentId, snap) => {
      await inventorySvc.saveSnapshot(prisma, agentId, snap);
    },
    delta: (agentId, delta) => inventorySvc.applyDelta(prisma, agentId, delta),
    jobEvent: async (agentId, ev) => jobEvents.apply(agentId, ev),
    track: (work) => rt.inflight.track(work),
    isShuttingDown: () => rt.shuttingDown,
  };

  const uiPorts: UiGatewayPorts = {
    authenticate: async (cookie): Promise<UiUser | null> => {
      if (!cookie) return null;
      const s = await rt.auth.api.getSession({ headers: new Headers({ cookie }) });
      if (!s) return null;
      const role = (s.user as { role?: string | null }).role ?? 'viewer';
      return { id: s.user.id, role };
    },
    canRead: async (user) => can(user.role, 'request:read'),
  };

  const jobEvents = createJobEventPorts(rt, signing);

  return {
    can,
    actorOf: (user) => ({
      type: 'user',
      id: user.id,
      name: user.email,
      role: actorSvc.isRole(user.role) ? user.role : 'viewer',
    }),
    signing,
    actor: actorSvc,
    agents: agentsSvc,
    audit: auditSvc,
    inventory: inventorySvc,
    users: usersPort,
    policy: policySvc,
    requests: requestsSvc,
    scripts: () => SCRIPTS.map(describeScript),
    scriptSource: (id) => getScript(id)?.source ?? null,
    recordSignIn: async (userId, ip) => {
      const u = await prisma.user.findUnique({ where: { id: userId }, select: { email: true, role: true } });
      await auditSvc.recordAudit(prisma, {
        actor: {
          type: 'user',
          id: userId,
          name: u?.email ?? userId,
          role: actorSvc.isRole(u?.role) ? u.role : 'viewer',
        },
        action: 'auth.sign_in',
        subjectType: 'user',
        subjectId: userId,
        data: { ip },
      });
    },
    agentPorts: () => agentPorts,
    uiPorts: () => uiPorts,
    dispatchPorts: () => jobEvents.dispatch,
    jobEventApplied: (agentId, ev, outcome) => jobEvents.applied(agentId, ev, outcome),
  };
}

export interface UsersPort {
  setRole(db: Database['prisma'], actor: Actor, userId: string, role: string): Promise<void>;
}

const usersPort: UsersPort = {
  async setRole(prisma, actor, userId, role) {
    await usersSvc.setRole(prisma, actor, userId, role);
  },
};

/** Role change outside a request (seed); audited as the system. */
export async function setUserRole(db: Database, userId: string, role: string): Promise<void> {
  await db.prisma.$transaction(async (tx) => {
    await tx.user.update({ where: { id: userId }, data: { role } });
    await auditSvc.appendAudit(tx, {
      actor: actorSvc.SYSTEM,
      action: 'user.role.set',
      subjectType: 'user',
      subjectId: userId,
      data: { role, via: 'seed' },
    });
  });
}
