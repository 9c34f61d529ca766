import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.uiFleet, ({ services, query }) => services.fleet.view(query));
