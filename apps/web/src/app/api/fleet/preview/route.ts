import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const POST = handle(api.previewSelector, async ({ rt, body }) => {
  const { limit, ...selector } = body;
  const processes = await rt.services.inventory.matchSelector(rt.db.prisma, selector, {
    limit: limit ?? 1000,
  });
  return { count: processes.length, processes };
});
