import { handle, HttpError } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.getPolicy, async ({ rt, params }) => {
  const policy = (await rt.services.policy.listPolicies(rt.db.prisma)).find((p) => p.id === params.id);
  if (!policy) throw new HttpError(404, 'NOT_FOUND', 'policy not found');
  return { policy };
});

export const PUT = handle(api.updatePolicy, async ({ rt, user, params, body }) => ({
  policy: await rt.services.policy.updatePolicy(rt.db.prisma, rt.services.actorOf(user), params.id, body),
}));

export const DELETE = handle(api.deletePolicy, async ({ rt, user, params }) => {
  await rt.services.policy.deletePolicy(rt.db.prisma, rt.services.actorOf(user), params.id);
  return { deleted: params.id };
});
