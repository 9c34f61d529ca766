'use client';
import { useEffect, useRef, useState } from 'react';
import { io, type Socket } from 'socket.io-client';
import type { UiEvent, UiEventName } from '@pyreach/protocol/ui';
import { onUiEvent } from './live';

let shared: Socket | null = null;

/** One /ui connection per tab, authenticated by the session cookie; reconnects by itself. */
export function uiSocket(): Socket {
  if (!shared) {
    shared = io('/ui', { transports: ['websocket'], withCredentials: true, reconnectionDelayMax: 5000 });
  }
  return shared;
}

export type LiveState = 'connecting' | 'live' | 'offline';

export function useLiveState(): LiveState {
  const [state, setState] = useState<LiveState>('connecting');
  useEffect(() => {
    const s = uiSocket();
    setState(s.connected ? 'live' : 'connecting');
    const on = () => setState('live');
    const off = () => setState('offline');
    s.on('connect', on);
    s.on('disconnect', off);
    s.on('connect_error', off);
    return () => {
      s.off('connect', on);
      s.off('disconnect', off);
      s.off('connect_error', off);
    };
  }, []);
  return state;
}

/**
 * Subscribes a handler to a /ui event for the component's lifetime (latest handler wins, no resubscribe). The
 * payload is parsed with its protocol schema first (live.ts): a malformed one is reported, never handled.
 */
export function useUiEvent<E extends UiEventName>(event: E, handler: (msg: UiEvent<E>) => void): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => onUiEvent(uiSocket(), event, (msg) => ref.current(msg)), [event]);
}

/**
 * Joins the request's room (output chunks only go to subscribers); rejoins after a reconnect. `onJoined` runs
 * once the server confirmed each join, the first included: what was pushed before it never reached this tab.
 */
export function useRequestSubscription(requestId: string, onJoined?: () => void): void {
  const cb = useRef(onJoined);
  cb.current = onJoined;
  useEffect(() => {
    const s = uiSocket();
    let gone = false;
    const join = () => {
      s.emit('subscribe', { requestId }, (res: { ok?: boolean } | undefined) => {
        if (!gone && res?.ok) cb.current?.();
      });
    };
    if (s.connected) join();
    s.on('connect', join);
    return () => {
      gone = true;
      s.off('connect', join);
      s.emit('unsubscribe', { requestId });
    };
  }, [requestId]);
}
