import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listRequests, ({ services, query }) => services.requests.list(query));

export const POST = handle(routes.createRequest, ({ services, actor, body }) =>
  services.requests.create(actor, body),
);
