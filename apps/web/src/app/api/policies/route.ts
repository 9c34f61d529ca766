import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listPolicies, ({ services }) => services.policies.list());

export const POST = handle(routes.createPolicy, ({ services, actor, body }) =>
  services.policies.create(actor, body),
);
