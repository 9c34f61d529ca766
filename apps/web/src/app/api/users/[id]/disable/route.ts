import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.setUserDisabled, ({ services, actor, params, body }) =>
  services.users.setDisabled(actor, params.id, body),
);
