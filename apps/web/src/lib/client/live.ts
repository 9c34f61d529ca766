/**
 * /ui events as typed, parsed values: every payload is parsed with its schema from `@pyreach/protocol/ui`
 * before a handler sees it; a payload that does not match goes to `onInvalid` (an error, never a cast) and no
 * handler runs. No React here (the hooks are in socket.ts).
 */
import { uiEventSchemas, type UiEvent, type UiEventName } from '@pyreach/protocol/ui';

export type InvalidEvent = (event: UiEventName, issues: string) => void;

/** The part of a socket.io client socket this needs (payloads arrive unknown: they are parsed here). */
export interface EventSocket {
  on(event: string, listener: (payload: unknown) => void): unknown;
  off(event: string, listener: (payload: unknown) => void): unknown;
}

const reportInvalid: InvalidEvent = (event, issues) =>
  console.error(`pyreach: ignored a /ui '${event}' event that does not match its schema: ${issues}`);

/** Subscribes `handler` to `event` on `socket`; returns the unsubscribe. */
export function onUiEvent<E extends UiEventName>(
  socket: EventSocket,
  event: E,
  handler: (msg: UiEvent<E>) => void,
  onInvalid: InvalidEvent = reportInvalid,
): () => void {
  const listener = (payload: unknown) => {
    const parsed = uiEventSchemas[event].safeParse(payload);
    if (!parsed.success) {
      onInvalid(
        event,
        parsed.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; '),
      );
      return;
    }
    handler(parsed.data as UiEvent<E>);
  };
  socket.on(event, listener);
  return () => {
    socket.off(event, listener);
  };
}
