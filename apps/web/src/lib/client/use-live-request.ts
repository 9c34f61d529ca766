'use client';
/**
 * A request kept current by its pushes (request-push.ts): read once, then every /ui event is applied to what is
 * shown; it is read again only on a gap, after a (re)join of its room, or when the push does not carry what
 * changed (an execution's end, an edit, a vote). Reads asked for while one runs are coalesced into one more.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { RequestDetail } from '@pyreach/protocol/api';
import { api } from './api';
import { applyPush, rebase, type Push } from './request-push';
import { useRequestSubscription, useUiEvent } from './socket';

export interface LiveRequest {
  data: RequestDetail | undefined;
  error: unknown;
  /** Reads the request again (after this page changed it: a vote, a cancel). */
  reload: () => void;
}

/** How long pushes asking for a read are gathered into one (100 targets ending together: one read). */
const COALESCE_MS = 200;

export function useLiveRequest(id: string): LiveRequest {
  const [data, setData] = useState<RequestDetail | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const current = useRef<RequestDetail | undefined>(undefined);
  const reading = useRef<{ ctl: AbortController; since: Push[] } | null>(null);
  const again = useRef(false);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  const read = useCallback(() => {
    if (reading.current) {
      again.current = true;
      return;
    }
    const r = { ctl: new AbortController(), since: [] as Push[] };
    reading.current = r;
    api('getRequest', { params: { id } }, { signal: r.ctl.signal }).then(
      (res) => {
        if (r.ctl.signal.aborted) return;
        reading.current = null;
        const a = rebase(res.request, r.since);
        current.current = a.request;
        setData(a.request);
        setError(null);
        if (a.refetch || again.current) {
          again.current = false;
          read();
        }
      },
      (e: unknown) => {
        if (r.ctl.signal.aborted) return;
        reading.current = null;
        setError(e);
      },
    );
  }, [id]);

  const readSoon = useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      read();
    }, COALESCE_MS);
  }, [read]);

  useEffect(() => {
    current.current = undefined;
    setData(undefined);
    read();
    return () => {
      reading.current?.ctl.abort();
      reading.current = null;
      if (timer.current) clearTimeout(timer.current);
      timer.current = null;
    };
  }, [read]);

  const push = (p: Push) => {
    reading.current?.since.push(p);
    const cur = current.current;
    if (!cur) return;
    const a = applyPush(cur, p);
    if (a.request !== cur) {
      current.current = a.request;
      setData(a.request);
    }
    if (a.refetch) readSoon();
  };

  // Joined (first time or after a reconnect): whatever was pushed before never reached this tab.
  useRequestSubscription(id, readSoon);
  useUiEvent('execution:output', (msg) => push({ type: 'output', msg }));
  useUiEvent('execution:update', (msg) => push({ type: 'update', msg }));
  useUiEvent('request:changed', (msg) => push({ type: 'request', msg }));

  return { data, error, reload: read };
}
