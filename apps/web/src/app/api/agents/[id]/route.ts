import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.getAgent, async ({ rt, params }) => {
  const agent = await rt.services.agents.getAgent(rt.db.prisma, params.id);
  return { agent: { ...agent, connectedHere: rt.agents.isConnected(agent.id) } };
});
