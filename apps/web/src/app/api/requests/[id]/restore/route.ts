import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.getRequestRestore, ({ services, params }) =>
  services.requests.restore(params.id),
);

export const POST = handle(routes.restoreRequestNow, ({ services, actor, params }) =>
  services.requests.restoreNow(actor, params.id),
);
