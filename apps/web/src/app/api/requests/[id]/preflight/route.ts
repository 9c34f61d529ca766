import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.getRequestPreflight, ({ services, params }) =>
  services.requests.preflight(params.id),
);
