/** The /ui namespace: live updates pushed to browsers. Browser-safe (no node imports). */
import { z } from 'zod';
import { Id } from './common';
import { ExecutionState, InspectionState, RequestState } from './states';

export const FleetChanged = z.object({ hostId: Id.nullable() });
/**
 * A request changed. `progress`: only its executions moved (an agent's report), so the record itself (code,
 * targets, reviews) is the one a browser already holds unless `state` differs; without it, the record changed
 * (filed, edited, voted, cancelled, ended): a page showing it reads it again.
 */
export const RequestChanged = z.object({
  requestId: Id,
  state: RequestState,
  progress: z.boolean().optional(),
});
/**
 * An execution's state. `seq`: the agent report that moved it (the execution's report sequence, 1, 2, 3, …,
 * shared with `execution:output`, and `ExecutionDetail.seq` on a fetched record); absent for what the control
 * plane decided itself (sent, held, expired, cancelled, agent lost), which reports nothing of the agent's.
 */
export const ExecutionUpdate = z.object({
  requestId: Id,
  executionId: Id,
  state: ExecutionState,
  errorCode: z.string().nullable().optional(),
  seq: z.number().int().positive().optional(),
});
/** A chunk of an execution's output; `seq` is its report's place in the execution's report sequence. */
export const ExecutionOutput = z.object({
  requestId: Id,
  executionId: Id,
  seq: z.number().int().positive(),
  chunk: z.string(),
});
/** An inspection moved (the browser that asked reads it again with GET /api/fleet/inspections/{id}). */
export const InspectionChanged = z.object({ inspectionId: Id, state: InspectionState });
export const Subscribe = z.object({ requestId: Id });
export const SubscribeAck = z.object({ ok: z.boolean() });

/** Runtime catalogue for the browser: event name → schema of its payload (parsed before any handler runs). */
export const uiEventSchemas = {
  'fleet:changed': FleetChanged,
  'request:changed': RequestChanged,
  'execution:update': ExecutionUpdate,
  'execution:output': ExecutionOutput,
  'inspection:changed': InspectionChanged,
} as const;

export type UiEventName = keyof typeof uiEventSchemas;
export type UiEvent<E extends UiEventName> = z.infer<(typeof uiEventSchemas)[E]>;

export type ServerToUiEvents = { [E in UiEventName]: (msg: UiEvent<E>) => void };

export interface UiToServerEvents {
  subscribe: (msg: z.infer<typeof Subscribe>, ack: (res: z.infer<typeof SubscribeAck>) => void) => void;
  unsubscribe: (msg: z.infer<typeof Subscribe>) => void;
}
