import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.uiNames, ({ services, body }) => services.users.names(body.ids));
