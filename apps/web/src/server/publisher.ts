/**
 * The one place that turns what services changed (services/effects.ts) into what others must hear: /ui pushes
 * to browsers, the revocation of an agent's connections, `job:cancel` to agents, and dispatcher wake-ups. Applied after the service's
 * transaction committed, by whoever made the call (route handler, agent gateway, dispatcher). The metrics see
 * the same effects on the way (execution timings feed the latency histograms).
 */
import type { Effect, WakeReason } from './services/effects';
import type { UiGateway } from './gateway/ui';
import type { AgentRooms } from './gateway/agent-rooms';

/**
 * Wake-ups for the dispatcher. The dispatcher is built after the Publisher (it needs the services' ports and
 * the agent gateway), so it subscribes here rather than being handed in.
 */
export class WakeSignal {
  private readonly listeners = new Set<(why: WakeReason) => void>();

  listen(fn: (why: WakeReason) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  wake(why: WakeReason): void {
    for (const fn of this.listeners) fn(why);
  }
}

export class Publisher {
  constructor(
    private readonly ui: Pick<
      UiGateway,
      | 'fleetChanged'
      | 'requestChanged'
      | 'executionUpdate'
      | 'executionOutput'
      | 'inspectionChanged'
      | 'tokenRevoked'
      | 'closeSessions'
    >,
    private readonly agents: Pick<AgentRooms, 'revoke' | 'cancel'>,
    readonly wakes: WakeSignal,
    /** Sees every effect first (the latency histograms of ../metrics.ts); never changes what is pushed. */
    private readonly observer?: { observe(effects: readonly Effect[]): void },
  ) {}

  apply(effects: readonly Effect[]): void {
    this.observer?.observe(effects);
    for (const e of effects) {
      switch (e.kind) {
        case 'request':
          this.ui.requestChanged({
            requestId: e.requestId,
            state: e.state,
            ...(e.progress ? { progress: true } : {}),
          });
          break;
        case 'execution':
          this.ui.executionUpdate({
            requestId: e.requestId,
            executionId: e.executionId,
            state: e.state,
            errorCode: e.errorCode,
            ...(e.seq !== undefined ? { seq: e.seq } : {}),
          });
          break;
        case 'output':
          this.ui.executionOutput({
            requestId: e.requestId,
            executionId: e.executionId,
            seq: e.seq,
            chunk: e.chunk,
          });
          break;
        case 'fleet':
          this.ui.fleetChanged({ hostId: e.hostId });
          break;
        case 'inspection':
          this.ui.inspectionChanged({ inspectionId: e.inspectionId, state: e.state });
          break;
        case 'cancel-job':
          this.agents.cancel(e.agentId, e.jobId);
          break;
        case 'agent-revoked':
          this.agents.revoke(e.agentId, e.reason);
          break;
        case 'token-revoked':
          this.ui.tokenRevoked(e.tokenId);
          break;
        case 'sessions-closed':
          this.ui.closeSessions(e.userId, e.sessionId);
          break;
        case 'wake':
          this.wakes.wake(e.why);
          break;
      }
    }
  }
}
