import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const PUT = handle(routes.setAgentNamespaceLabels, ({ services, actor, params, body }) =>
  services.agents.setNamespaceLabels(actor, params.id, body),
);
