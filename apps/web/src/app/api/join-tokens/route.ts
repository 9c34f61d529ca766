import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const POST = handle(api.createJoinToken, async ({ rt, user, body }) => {
  const t = await rt.services.agents.createJoinToken(rt.db.prisma, rt.services.actorOf(user), body);
  return { joinToken: { id: t.id, token: t.token, expiresAt: t.expiresAt.toISOString(), labels: t.labels } };
});
