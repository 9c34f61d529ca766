import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.getRequest, ({ services, params }) => services.requests.get(params.id));

export const PATCH = handle(routes.updateRequest, ({ services, actor, params, body }) =>
  services.requests.update(actor, params.id, body),
);
