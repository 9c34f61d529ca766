import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.getInspection, ({ services, actor, params }) =>
  services.fleet.inspection(actor, params.id),
);
