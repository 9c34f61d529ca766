import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.createJoinToken, ({ services, actor, body }) =>
  services.agents.createJoinToken(actor, body),
);

export const GET = handle(routes.listJoinTokens, ({ services, actor }) =>
  services.agents.listJoinTokens(actor),
);
