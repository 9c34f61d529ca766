import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.getPolicy, ({ services, params }) => services.policies.get(params.id));

export const PUT = handle(routes.updatePolicy, ({ services, actor, params, body }) =>
  services.policies.update(actor, params.id, body),
);

export const DELETE = handle(routes.deletePolicy, ({ services, actor, params }) =>
  services.policies.remove(actor, params.id),
);
