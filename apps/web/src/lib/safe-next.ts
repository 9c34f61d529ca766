/**
 * Where to go after signing in: `next=` names a path of this origin, nothing else. Browsers treat `\` as `/`
 * and drop tabs and newlines inside URLs, so `/\evil.host/x` (`/%5Cevil.host/x` once the query is decoded) and
 * `/\t/evil.host` would become `//evil.host…` — another server. Anything doubtful goes to `/`.
 */
export function safeNext(next: string | null | undefined, origin: string): string {
  if (!next || next.length > 2048) return '/';
  if (!next.startsWith('/') || next.startsWith('//')) return '/';
  // Backslashes, control characters (tab, CR, LF, NUL…), spaces and DEL: never in a path we produced.
  if (/[\\\u0000-\u0020\u007f]/.test(next)) return '/';
  let resolved: URL;
  try {
    resolved = new URL(next, origin);
  } catch {
    return '/';
  }
  if (resolved.origin !== new URL(origin).origin) return '/';
  return `${resolved.pathname}${resolved.search}${resolved.hash}`;
}
