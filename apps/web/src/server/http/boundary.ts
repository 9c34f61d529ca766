/**
 * The browser boundary and the input guards every route shares, in front of the route table's schemas:
 *
 * - A cookie-authenticated state-changing call must come from a page of PUBLIC_URL: its `Origin` is the public
 *   URL's origin and `Sec-Fetch-Site` (when the browser sends it) is `same-origin`. Cookies are SameSite=Lax, so
 *   a page of another origin of the same *site* (another port, a sibling host) would otherwise ride on them.
 * - Bodies are `application/json`: a cross-site form or `text/plain` fetch cannot be a simple request then.
 * - No string anywhere in a body or query holds NUL (PostgreSQL text refuses it: that was a bare 500), and no
 *   body nests deeper than MAX_JSON_DEPTH (the recursive schemas would overflow the stack).
 * - /api paths outside the route table answer JSON 404, a method the table does not list JSON 405 with Allow.
 */
import type { Method, RouteSpec } from '@pyreach/protocol/routes';
import { routes } from '@pyreach/protocol/routes';

/** Deepest nesting of arrays/objects accepted in a JSON body (params included). */
export const MAX_JSON_DEPTH = 32;

export interface BoundaryRefusal {
  code: 'CROSS_ORIGIN' | 'UNSUPPORTED_MEDIA_TYPE' | 'VALIDATION';
  message: string;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isStateChanging(method: string): boolean {
  return !SAFE_METHODS.has(method.toUpperCase());
}

/** Origin and Sec-Fetch-Site of a state-changing call against the public URL; null when it may proceed. */
export function checkOrigin(headers: Headers, publicUrl: string): BoundaryRefusal | null {
  const expected = new URL(publicUrl).origin;
  const site = headers.get('sec-fetch-site');
  if (site !== null && site !== 'same-origin')
    return {
      code: 'CROSS_ORIGIN',
      message: `refused: this call came from another site (Sec-Fetch-Site: ${site.slice(0, 40)}); use the dashboard at ${expected}`,
    };
  const origin = headers.get('origin');
  if (origin === null)
    return {
      code: 'CROSS_ORIGIN',
      message: `refused: a state-changing call needs an Origin header equal to ${expected} (PUBLIC_URL)`,
    };
  if (origin !== expected)
    return {
      code: 'CROSS_ORIGIN',
      message: `refused: Origin ${origin.slice(0, 200)} is not ${expected} (PUBLIC_URL)`,
    };
  return null;
}

/** `application/json` (any parameters) is required when a body is expected, and whenever one is declared. */
export function checkContentType(headers: Headers, expectsBody: boolean): BoundaryRefusal | null {
  const raw = headers.get('content-type');
  const type = raw?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/json') return null;
  if (raw === null && !expectsBody) return null;
  return {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: `body must be sent as Content-Type: application/json (got ${raw === null ? 'none' : raw.slice(0, 100)})`,
  };
}

/**
 * The first string holding NUL, or the first value nested too deep, named by its path (`body.reason`).
 * Iterative, so a hostile depth cannot overflow the stack here either.
 */
export function findUnsafeValue(value: unknown, where: string): BoundaryRefusal | null {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v: value, path: where, depth: 0 }];
  while (stack.length) {
    const { v, path, depth } = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000'))
        return { code: 'VALIDATION', message: `${path}: contains a NUL character (U+0000); remove it` };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH)
      return {
        code: 'VALIDATION',
        message: `${path}: nested deeper than ${MAX_JSON_DEPTH} levels; flatten the value`,
      };
    const entries: [string, unknown][] = Array.isArray(v)
      ? v.map((x, i) => [String(i), x])
      : Object.entries(v as Record<string, unknown>);
    for (const [k, x] of entries) {
      if (k.includes('\u0000'))
        return { code: 'VALIDATION', message: `${path}: a key contains a NUL character (U+0000); remove it` };
      stack.push({ v: x, path: `${path}.${k}`, depth: depth + 1 });
    }
  }
  return null;
}

/** OpenAPI path → matcher over the URL's (still encoded) segments. */
function matcher(path: string): (segments: string[]) => boolean {
  const want = path.split('/').filter(Boolean);
  return (segments) =>
    segments.length === want.length && want.every((w, i) => w.startsWith('{') || w === segments[i]);
}

const TABLE: { spec: RouteSpec; matches: (segments: string[]) => boolean }[] = Object.values(
  routes as Record<string, RouteSpec>,
).map((spec) => ({ spec, matches: matcher(spec.path) }));

export type RouteGate =
  | { kind: 'ok' }
  | { kind: 'not-found'; message: string }
  | { kind: 'method'; allow: Method[]; message: string };

/**
 * Whether an /api request names a route of the table with its method. The auth library's own endpoints
 * (/api/auth/*) are its business. Runs before Next.js, whose answers for these are an HTML page and an empty 405.
 */
export function gateApiRoute(method: string, pathname: string): RouteGate {
  if (pathname === '/api/auth' || pathname.startsWith('/api/auth/')) return { kind: 'ok' };
  const segments = pathname.split('/').filter(Boolean);
  const found = TABLE.filter((t) => t.matches(segments));
  if (!found.length)
    return {
      kind: 'not-found',
      message: `no API route ${pathname.slice(0, 200)}; the routes are listed at /api/openapi.json`,
    };
  const m = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
  if (found.some((t) => t.spec.method === m)) return { kind: 'ok' };
  const allow = [...new Set(found.map((t) => t.spec.method))];
  return {
    kind: 'method',
    allow,
    message: `${method.slice(0, 10)} is not allowed on ${pathname.slice(0, 200)}; use ${allow.join(' or ')}`,
  };
}
