import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.listPolicies, async ({ rt }) => ({
  policies: await rt.services.policy.listPolicies(rt.db.prisma),
}));

export const POST = handle(api.createPolicy, async ({ rt, user, body }) => ({
  policy: await rt.services.policy.createPolicy(rt.db.prisma, rt.services.actorOf(user), body),
}));
