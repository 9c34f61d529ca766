import { handle } from '../../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.uiFleetProcess, ({ services, params }) => services.fleet.process(params.id));
