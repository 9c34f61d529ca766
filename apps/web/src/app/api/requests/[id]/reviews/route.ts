import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.reviewRequest, ({ services, actor, user, params, body }) =>
  services.requests.review(actor, user, params.id, body),
);
