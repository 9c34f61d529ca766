import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const DELETE = handle(routes.revokeApiToken, ({ services, actor, params }) =>
  services.serviceAccounts.revokeToken(actor, params.tokenId),
);
