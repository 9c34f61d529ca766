import { z } from 'zod';
import { handle } from '../../../server/http/handler';
import { defineRoute } from '../../../server/http/spec';

export const spec = defineRoute({
  method: 'GET',
  path: '/api/health',
  summary: 'Liveness and database reachability',
  tag: 'system',
  auth: 'public',
  response: z.object({ ok: z.literal(true), db: z.enum(['pglite', 'postgres']), uptimeSeconds: z.number() }),
});

export const GET = handle(spec, async ({ rt }) => {
  await rt.db.prisma.$queryRaw`SELECT 1`;
  return { db: rt.db.kind, uptimeSeconds: Math.round((Date.now() - rt.startedAt.getTime()) / 1000) };
});
