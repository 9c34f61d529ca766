import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listProcesses, ({ services, query }) => services.fleet.processes(query));
