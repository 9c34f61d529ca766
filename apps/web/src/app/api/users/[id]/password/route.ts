import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.setTemporaryPassword, ({ services, actor, params, body }) =>
  services.users.setTemporaryPassword(actor, params.id, body),
);
