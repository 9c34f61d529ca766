import { handle } from '../../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.rejectGovernanceChange, ({ services, actor, user, params, body }) =>
  services.governance.decide(actor, user, params.id, 'reject', body),
);
