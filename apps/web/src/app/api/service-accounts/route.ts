import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listServiceAccounts, ({ services, actor }) =>
  services.serviceAccounts.list(actor),
);

export const POST = handle(routes.createServiceAccount, ({ services, actor, body }) =>
  services.serviceAccounts.create(actor, body),
);
