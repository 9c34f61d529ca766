/**
 * Polls `fn` until it returns something truthy, and returns that. A throw counts as "not yet" (the server may
 * be restarting, a row may not exist yet); on timeout the error names what was awaited and the last failure.
 */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    const v = await Promise.resolve()
      .then(fn)
      .catch((err: unknown) => {
        last = err;
        return undefined;
      });
    if (v) return v;
    if (Date.now() > until) {
      const why = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(`timed out waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
