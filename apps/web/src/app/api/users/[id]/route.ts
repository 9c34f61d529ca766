import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const PATCH = handle(api.setUserRole, async ({ rt, user, params, body }) => {
  await rt.services.users.setRole(rt.db.prisma, rt.services.actorOf(user), params.id, body.role);
  return { user: { id: params.id, role: body.role } };
});
