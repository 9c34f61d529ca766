import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listApiTokens, ({ services, actor, params }) =>
  services.serviceAccounts.listTokens(actor, params.id),
);

export const POST = handle(routes.createApiToken, ({ services, actor, params, body }) =>
  services.serviceAccounts.createToken(actor, params.id, body),
);
