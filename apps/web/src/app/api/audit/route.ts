import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.queryAudit, async ({ rt, query }) => {
  const { from, to, ...rest } = query;
  const page = await rt.services.audit.queryAudit(rt.db.prisma, {
    ...rest,
    ...(from ? { from: new Date(from) } : {}),
    ...(to ? { to: new Date(to) } : {}),
  });
  return { events: page.items, nextCursor: page.nextCursor };
});
