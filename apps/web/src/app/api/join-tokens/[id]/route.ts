import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const DELETE = handle(routes.revokeJoinToken, ({ services, actor, params }) =>
  services.agents.revokeJoinToken(actor, params.id),
);
