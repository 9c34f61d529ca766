import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.revokeAgent, ({ services, actor, params, body }) =>
  services.agents.revoke(actor, params.id, body.reason),
);
