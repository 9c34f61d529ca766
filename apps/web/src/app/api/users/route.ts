import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listUsers, async ({ services }) => ({ users: await services.users.list() }));

export const POST = handle(routes.createUser, ({ services, actor, body }) =>
  services.users.create(actor, body),
);
