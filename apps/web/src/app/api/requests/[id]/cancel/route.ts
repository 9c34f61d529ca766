import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.cancelRequest, ({ services, actor, params, body }) =>
  services.requests.cancel(actor, params.id, body.reason),
);
