'use client';
import { useCallback, useEffect, useRef, useState } from 'react';

/** The one error shape of the HTTP API: { ok:false, error:{ code, message } } with an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export async function api<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const { json, headers, ...rest } = init;
  let res: Response;
  try {
    res = await fetch(path, {
      credentials: 'same-origin',
      cache: 'no-store',
      ...rest,
      headers: {
        accept: 'application/json',
        ...(json !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: json !== undefined ? JSON.stringify(json) : rest.body,
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server could not be reached. Check your connection and retry.');
  }
  let body: unknown = null;
  const text = await res.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  const b = body as { ok?: boolean; error?: { code?: string; message?: string; details?: unknown } } | null;
  if (!res.ok || b?.ok === false) {
    if (res.status === 401 && b?.error?.code === 'UNAUTHENTICATED' && typeof window !== 'undefined') {
      window.location.assign(
        `/sign-in?next=${encodeURIComponent(window.location.pathname + window.location.search)}`,
      );
    }
    throw new ApiError(
      res.status,
      b?.error?.code ?? `HTTP_${res.status}`,
      b?.error?.message ?? `request failed (${res.status})`,
      b?.error?.details,
    );
  }
  return body as T;
}

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** GET a path; `reload()` refetches without clearing what is shown (live updates do not flicker). */
export function useApi<T>(path: string | null): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState<boolean>(path !== null);
  const [tick, setTick] = useState(0);
  const current = useRef(path);
  current.current = path;

  useEffect(() => {
    if (path === null) {
      setLoading(false);
      return;
    }
    let cancelled = false;
    setLoading(true);
    api<T>(path).then(
      (d) => {
        if (cancelled) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (cancelled) return;
        setError(e);
        setLoading(false);
      },
    );
    return () => {
      cancelled = true;
    };
  }, [path, tick]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return typeof e === 'string' ? e : 'Unexpected error';
}

const nameCache = new Map<string, { name: string; role: string }>();

/** Names for user ids, cached for the tab's lifetime (ids never change owner). */
export function useNames(ids: (string | null | undefined)[]): Record<string, { name: string; role: string }> {
  const wanted = [...new Set(ids.filter((x): x is string => !!x))].sort();
  const key = wanted.join(',');
  const [, force] = useState(0);
  useEffect(() => {
    const missing = key ? key.split(',').filter((id) => !nameCache.has(id)) : [];
    if (missing.length === 0) return;
    let cancelled = false;
    api<{ users: Record<string, { name: string; role: string }> }>('/api/ui/names', {
      method: 'POST',
      json: { ids: missing },
    }).then(
      (r) => {
        for (const [id, v] of Object.entries(r.users)) nameCache.set(id, v);
        if (!cancelled) force((n) => n + 1);
      },
      () => undefined,
    );
    return () => {
      cancelled = true;
    };
  }, [key]);
  const out: Record<string, { name: string; role: string }> = {};
  for (const id of wanted) {
    const v = nameCache.get(id);
    if (v) out[id] = v;
  }
  return out;
}

/** agentId → hostname, for labelling targets and executions. */
export function useHostnames(): Record<string, string> {
  const { data } = useApi<{ hosts: { hostname: string; agent: { id: string } }[] }>(
    '/api/fleet/hosts?includeRevoked=true',
  );
  const out: Record<string, string> = {};
  for (const h of data?.hosts ?? []) out[h.agent.id] = h.hostname;
  return out;
}
