import { handle } from '../../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.revokeBreakGlassGrant, ({ services, actor, params }) =>
  services.breakGlass.revoke(actor, params.id),
);
