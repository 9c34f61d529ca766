import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listAgents, ({ services, query }) => services.agents.list(query));
