/**
 * Sign-in throttle per client IP + email, in the shared rate_limit table (so it holds across replicas).
 * Returns the seconds to wait when the caller is over the limit, or 0.
 */
import { CLIENT_IP_HEADER } from '../auth';
import type { Runtime } from '../runtime';

const WINDOW_MS = 60_000;

export async function checkLoginRate(rt: Runtime, req: Request): Promise<number> {
  let email = '';
  try {
    const body = (await req.clone().json()) as { email?: unknown };
    if (typeof body.email === 'string') email = body.email.trim().toLowerCase().slice(0, 320);
  } catch {
    // Malformed bodies are refused by better-auth; they still count against the IP.
  }
  const ip = req.headers.get(CLIENT_IP_HEADER) ?? 'unknown';
  const key = `signin:${ip}:${email}`;
  const now = Date.now();
  const prisma = rt.db.prisma;
  // One statement: reset the window when it passed, else count up. Atomic on both databases.
  const rows = await prisma.$queryRaw<{ count: number; lastRequest: bigint }[]>`
    INSERT INTO rate_limit (id, key, count, "lastRequest") VALUES (${key}, ${key}, 1, ${BigInt(now)})
    ON CONFLICT (key) DO UPDATE SET
      count = CASE WHEN rate_limit."lastRequest" < ${BigInt(now - WINDOW_MS)} THEN 1 ELSE rate_limit.count + 1 END,
      "lastRequest" = CASE WHEN rate_limit."lastRequest" < ${BigInt(now - WINDOW_MS)} THEN ${BigInt(now)} ELSE rate_limit."lastRequest" END
    RETURNING count, "lastRequest"`;
  const row = rows[0];
  if (!row || row.count <= rt.env.loginRateLimit) return 0;
  return Math.max(1, Math.ceil((Number(row.lastRequest) + WINDOW_MS - now) / 1000));
}
