import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.getAgent, ({ services, params }) => services.agents.get(params.id));
