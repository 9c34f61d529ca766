import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.listHosts, async ({ rt, query }) => ({
  hosts: await rt.services.inventory.listHosts(rt.db.prisma, query),
}));
