/**
 * Binds the transport (routes, gateways, dispatcher) to the services in ./services. This is the only module
 * that knows both sides; routes reach it through getAppContext().services.
 */
import type { Failure } from '@pyreach/protocol/common';
import type { Heartbeat, JobEvent } from '@pyreach/protocol/agent';
import type { InventoryDelta, InventorySnapshot } from '@pyreach/protocol/inventory';
import type { DispatchPorts } from './dispatcher';
import type { AgentGatewayPorts } from './gateway/agents';
import type { UiGatewayPorts } from './gateway/ui';
import type { Runtime } from './runtime';

export interface Services {
  can(role: string, action: string): boolean;
  audit: { signIn(userId: string, ip: string | null): Promise<void> };
  agentPorts(): AgentGatewayPorts;
  uiPorts(): UiGatewayPorts;
  dispatchPorts(): DispatchPorts;
  jobEventApplied(agentId: string, ev: JobEvent, outcome: 'applied' | 'duplicate'): void;
}

const notYet = (what: string) => () => Promise.reject(Object.assign(new Error(`${what} is not wired yet`), { code: 'NOT_IMPLEMENTED', status: 501 }));

export async function createServices(rt: Runtime): Promise<Services> {
  const prisma = rt.db.prisma;
  const agentPorts: AgentGatewayPorts = {
    getAgent: async (agentId) => prisma.agent.findUnique({ where: { id: agentId }, select: { id: true, publicKey: true, revokedAt: true } }),
    authFailed: async (agentId, reason, ip) => rt.log.warn({ agentId, reason, ip }, 'agent.auth_failed'),
    connected: async (agentId) => {
      await prisma.agent.update({ where: { id: agentId }, data: { status: 'online', connectedAt: new Date(), lastSeenAt: new Date() } });
    },
    disconnected: async (agentId) => {
      await prisma.agent.update({ where: { id: agentId }, data: { status: 'offline' } });
    },
    heartbeat: async (agentId: string, hb: Heartbeat) => {
      await prisma.agent.update({ where: { id: agentId }, data: { lastSeenAt: new Date(), outboxDepth: hb.outboxDepth } });
    },
    snapshot: notYet('inventory.saveSnapshot') as (a: string, s: InventorySnapshot) => Promise<void>,
    delta: notYet('inventory.applyDelta') as (a: string, d: InventoryDelta) => Promise<void>,
    jobEvent: notYet('executions.applyJobEvent') as (a: string, e: JobEvent) => Promise<'applied' | Failure>,
    track: (work) => rt.inflight.track(work),
    isShuttingDown: () => rt.shuttingDown,
  };
  return {
    can: (role, action) => role === 'admin' || action.endsWith('.read'),
    audit: { signIn: async () => undefined },
    agentPorts: () => agentPorts,
    uiPorts: () => ({ authenticate: async () => null, canRead: async () => false }),
    dispatchPorts: () => ({
      nextJobs: async () => [],
      dispatchFailed: async () => undefined,
      agentLost: async () => undefined,
      housekeeping: async () => undefined,
    }),
    jobEventApplied: () => undefined,
  };
}

/** Role change outside a request (seed). */
export async function setUserRole(db: import('@pyreach/db').Database, userId: string, role: string): Promise<void> {
  await db.prisma.user.update({ where: { id: userId }, data: { role } });
}
