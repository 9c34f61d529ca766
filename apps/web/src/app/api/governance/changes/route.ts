import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listGovernanceChanges, ({ services, query }) =>
  services.governance.list(query),
);
