/**
 * Job-side wiring (dispatch + execution events). Kept apart from wiring.ts because it binds the dispatch and
 * executions services, which land separately.
 */
import type { Failure } from '@pyreach/protocol/common';
import type { JobEvent } from '@pyreach/protocol/agent';
import type { DispatchPorts } from './dispatcher';
import type { Runtime } from './runtime';

export interface JobEventPorts {
  apply(agentId: string, ev: JobEvent): Promise<'applied' | 'duplicate' | Failure>;
  applied(agentId: string, ev: JobEvent, outcome: 'applied' | 'duplicate'): void;
  dispatch: DispatchPorts;
}

export function createJobEventPorts(_rt: Runtime): JobEventPorts {
  return {
    apply: async () => ({ ok: false, error: { code: 'NOT_IMPLEMENTED', message: 'executions are not wired yet' } }),
    applied: () => undefined,
    dispatch: {
      nextJobs: async () => [],
      dispatchFailed: async () => undefined,
      agentLost: async () => undefined,
      housekeeping: async () => undefined,
    },
  };
}
