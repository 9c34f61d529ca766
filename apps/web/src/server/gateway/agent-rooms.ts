/**
 * What reaches an agent wherever it is connected: every authenticated agent socket joins the room of its
 * agent id, and rooms go through the Redis adapter, so these work across replicas. Built before the Publisher
 * (which revokes through it) and handed to the agent gateway (which joins sockets to the rooms).
 */
import type { Namespace, Server } from 'socket.io';

export const agentRoom = (agentId: string) => `agent:${agentId}`;

export class AgentRooms {
  readonly nsp: Namespace;

  constructor(io: Server) {
    this.nsp = io.of('/agents');
  }

  /** Whether the agent holds an authenticated connection on any replica (asks the others through the adapter). */
  async isConnectedAnywhere(agentId: string): Promise<boolean> {
    return (await this.nsp.in(agentRoom(agentId)).fetchSockets()).length > 0;
  }

  cancel(agentId: string, jobId: string): void {
    this.nsp.to(agentRoom(agentId)).emit('job:cancel', { jobId });
  }

  /** Tells the agent it is revoked and drops it, on every replica. */
  revoke(agentId: string, reason: string): void {
    this.nsp.to(agentRoom(agentId)).emit('agent:revoked', { reason });
    // Disconnect right after the event is written; socket.io flushes the packet before closing.
    this.nsp.in(agentRoom(agentId)).disconnectSockets(true);
    // Sockets still in the challenge phase are not in the room yet.
    for (const [, s] of this.nsp.sockets)
      if ((s.data as { agentId?: string }).agentId === agentId) s.disconnect(true);
  }
}
