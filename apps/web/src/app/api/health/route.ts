import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.health, async ({ rt }) => {
  await rt.db.prisma.$queryRaw`SELECT 1`;
  return { db: rt.db.kind, uptimeSeconds: Math.round((Date.now() - rt.startedAt.getTime()) / 1000) };
});
