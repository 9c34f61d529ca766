/**
 * Readiness of one replica (GET /api/health/ready, the readinessProbe): the database answers `SELECT 1`, and
 * Redis answers PING when configured (cluster.ts). Each check has a deadline, so a dependency that hangs makes
 * the replica not ready rather than the probe time out. Liveness (/api/health/live) asks neither.
 */
import type { Readiness } from '@pyreach/protocol/api';
import type { RedisReadiness } from './cluster';

export interface ReadinessPorts {
  /** Resolves when the database answered (services.system.ping). */
  database(): Promise<unknown>;
  redis(timeoutMs: number): Promise<RedisReadiness>;
  timeoutMs: number;
}

async function timed(
  work: () => Promise<unknown>,
  timeoutMs: number,
): Promise<Readiness['checks']['database']> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      work(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { ok: true, latencyMs: Date.now() - started };
  } catch (err) {
    // The driver's message names the failure (refused, timeout, auth); URLs and passwords are not in it.
    return { ok: false, error: err instanceof Error ? err.message.split('\n')[0]!.slice(0, 200) : 'failed' };
  } finally {
    clearTimeout(timer);
  }
}

export async function checkReadiness(p: ReadinessPorts): Promise<Readiness> {
  const [database, redis] = await Promise.all([timed(() => p.database(), p.timeoutMs), p.redis(p.timeoutMs)]);
  return {
    ready: database.ok && redis.ok,
    checks: { database, redis },
  };
}

/** The failing checks, named: "redis: not connected (pub, sub)". */
export function notReadyMessage(r: Readiness): string {
  const failing = Object.entries(r.checks)
    .filter(([, c]) => !c.ok)
    .map(([name, c]) => `${name}: ${c.error ?? 'failed'}`);
  return `not ready: ${failing.join('; ')}`;
}
