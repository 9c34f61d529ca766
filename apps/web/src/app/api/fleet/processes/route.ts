import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.listProcesses, async ({ rt, query }) => ({
  processes: await rt.services.inventory.listProcesses(rt.db.prisma, query),
}));
