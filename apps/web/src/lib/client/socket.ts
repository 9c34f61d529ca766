'use client';
import { useEffect, useRef, useState } from 'react';
import { io, type Socket } from 'socket.io-client';
import type { ServerToUiEvents, UiToServerEvents } from '@pyreach/protocol/ui';

type UiSocket = Socket<ServerToUiEvents, UiToServerEvents>;

let shared: UiSocket | null = null;

/** One /ui connection per tab, authenticated by the session cookie; reconnects by itself. */
export function uiSocket(): UiSocket {
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

/** Subscribes a handler to a /ui event for the component's lifetime (latest handler wins, no resubscribe). */
export function useUiEvent<E extends keyof ServerToUiEvents>(event: E, handler: ServerToUiEvents[E]): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const s = uiSocket();
    const fn = ((...args: unknown[]) => (ref.current as (...a: unknown[]) => void)(...args)) as never;
    s.on(event, fn);
    return () => {
      s.off(event, fn);
    };
  }, [event]);
}

/** Joins the request's room (output chunks only go to subscribers); rejoins after a reconnect. */
export function useRequestSubscription(requestId: string, onReconnect?: () => void): void {
  const cb = useRef(onReconnect);
  cb.current = onReconnect;
  useEffect(() => {
    const s = uiSocket();
    let first = true;
    const join = () => {
      s.emit('subscribe', { requestId }, () => undefined);
      if (!first) cb.current?.();
      first = false;
    };
    if (s.connected) join();
    s.on('connect', join);
    return () => {
      s.off('connect', join);
      s.emit('unsubscribe', { requestId });
    };
  }, [requestId]);
}
