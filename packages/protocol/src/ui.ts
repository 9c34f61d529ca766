/** The /ui namespace: live updates pushed to browsers. Browser-safe (no node imports). */
import { z } from 'zod';
import { Id } from './common';
import { ExecutionState } from './exec';

export const UI_NAMESPACE = '/ui';

export const FleetChanged = z.object({ hostId: Id.nullable() });
export const RequestChanged = z.object({ requestId: Id, state: z.string() });
export const ExecutionUpdate = z.object({
  requestId: Id,
  executionId: Id,
  state: ExecutionState,
  errorCode: z.string().nullable().optional(),
});
export const ExecutionOutput = z.object({
  requestId: Id,
  executionId: Id,
  seq: z.number().int().positive(),
  chunk: z.string(),
});
export const Subscribe = z.object({ requestId: Id });

export interface ServerToUiEvents {
  'fleet:changed': (msg: z.infer<typeof FleetChanged>) => void;
  'request:changed': (msg: z.infer<typeof RequestChanged>) => void;
  'execution:update': (msg: z.infer<typeof ExecutionUpdate>) => void;
  'execution:output': (msg: z.infer<typeof ExecutionOutput>) => void;
}

export interface UiToServerEvents {
  subscribe: (msg: z.infer<typeof Subscribe>, ack: (res: { ok: boolean }) => void) => void;
  unsubscribe: (msg: z.infer<typeof Subscribe>) => void;
}
