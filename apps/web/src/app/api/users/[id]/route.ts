import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const PATCH = handle(routes.setUserRole, ({ services, actor, params, body }) =>
  services.users.setRole(actor, params.id, body.role),
);
