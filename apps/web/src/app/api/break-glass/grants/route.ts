import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listBreakGlassGrants, ({ services }) => services.breakGlass.list());

export const POST = handle(routes.createBreakGlassGrant, ({ services, actor, body }) =>
  services.breakGlass.grant(actor, body),
);
