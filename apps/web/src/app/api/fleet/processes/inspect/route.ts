import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.inspectProcess, ({ services, actor, body }) =>
  services.fleet.inspect(actor, body),
);
