import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.listAgents, async ({ rt, query }) => {
  const agents = await rt.services.agents.listAgents(rt.db.prisma, query);
  return { agents: agents.map((a) => ({ ...a, connectedHere: rt.agents.isConnected(a.id) })) };
});
