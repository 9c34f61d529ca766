'use client';
/**
 * React hooks over the typed client (call.ts): one cancellable-fetch hook, the route-table reads built on it,
 * and the dashboard's name and hostname lookups.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, call, type CallInput, type CallOptions, type CallOutput, type JsonRoute } from './call';

export { ApiError, errorMessage } from './call';

/** In the browser: a 401 means the session ended; go to the sign-in page and come back here afterwards. */
const toSignIn = () => {
  if (typeof window === 'undefined') return;
  window.location.assign(
    `/sign-in?next=${encodeURIComponent(window.location.pathname + window.location.search)}`,
  );
};

/** `call` as the dashboard uses it: on a 401 the browser goes to the sign-in page. */
export function api<N extends JsonRoute>(
  name: N,
  input: CallInput<N>,
  opts: Omit<CallOptions, 'onUnauthenticated'> = {},
): Promise<CallOutput<N>> {
  return call(name, input, { ...opts, onUnauthenticated: toSignIn });
}

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * The one cancellable fetch: runs `load` whenever `key` changes (null: nothing to load) or `reload()` is called;
 * a newer run aborts the older one, so a slow answer never overwrites a newer one. `reload()` keeps what is shown
 * until the answer arrives (live updates do not flicker).
 */
export function useCancellable<T>(
  key: string | null,
  load: (signal: AbortSignal) => Promise<T>,
): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState<boolean>(key !== null);
  const [tick, setTick] = useState(0);
  const loader = useRef(load);
  loader.current = load;

  useEffect(() => {
    if (key === null) {
      setLoading(false);
      return;
    }
    const ctl = new AbortController();
    setLoading(true);
    loader.current(ctl.signal).then(
      (d) => {
        if (ctl.signal.aborted) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (ctl.signal.aborted) return;
        setError(e);
        setLoading(false);
      },
    );
    return () => ctl.abort();
  }, [key, tick]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

/** Reads one route of the table (null input: not yet). */
export function useCall<N extends JsonRoute>(name: N, input: CallInput<N> | null): Resource<CallOutput<N>> {
  const key = input === null ? null : `${name} ${JSON.stringify(input)}`;
  return useCancellable(key, (signal) => api(name, input as CallInput<N>, { signal }));
}

const nameCache = new Map<string, { name: string; role: string }>();

/** Names for user ids, cached for the tab's lifetime (ids never change owner). */
export function useNames(ids: (string | null | undefined)[]): Record<string, { name: string; role: string }> {
  const wanted = [...new Set(ids.filter((x): x is string => !!x))].sort();
  const key = wanted.join(',');
  const [, force] = useState(0);
  const missing = key ? key.split(',').filter((id) => !nameCache.has(id)) : [];
  useCancellable(missing.length ? missing.join(',') : null, async (signal) => {
    const r = await api('uiNames', { body: { ids: missing } }, { signal });
    for (const [id, v] of Object.entries(r.users)) nameCache.set(id, v);
    force((n) => n + 1);
    return r;
  });
  const out: Record<string, { name: string; role: string }> = {};
  for (const id of wanted) {
    const v = nameCache.get(id);
    if (v) out[id] = v;
  }
  return out;
}

/** agentId → hostname, for labelling targets and executions. */
export function useHostnames(): Record<string, string> {
  const { data } = useCall('listHosts', { query: { includeRevoked: 'true' } });
  const out: Record<string, string> = {};
  for (const h of data?.hosts ?? []) out[h.agent.id] = h.hostname;
  return out;
}

export function isApiError(e: unknown, code?: string): e is ApiError {
  return e instanceof ApiError && (code === undefined || e.code === code);
}
