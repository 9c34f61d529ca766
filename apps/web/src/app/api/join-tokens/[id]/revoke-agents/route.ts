import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.revokeJoinTokenAgents, ({ services, actor, params, body }) =>
  services.agents.revokeJoinTokenAgents(actor, params.id, body.reason),
);
