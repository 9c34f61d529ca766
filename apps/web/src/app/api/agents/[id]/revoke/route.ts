import { handle } from '../../../../../server/http/handler';
import { api } from '../../../../../server/http/api-spec';

export const POST = handle(api.revokeAgent, async ({ rt, user, params, body }) => {
  const agent = await rt.services.agents.revokeAgent(
    rt.db.prisma,
    rt.services.actorOf(user),
    params.id,
    body.reason,
  );
  // After the commit: the agent is told and dropped everywhere; it is refused at every later handshake.
  rt.agents.revoke(agent.id, body.reason);
  rt.ui.fleetChanged(null);
  return { agent };
});
