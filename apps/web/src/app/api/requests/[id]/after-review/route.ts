import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.closeAfterReview, ({ services, actor, params, body }) =>
  services.requests.closeAfterReview(actor, params.id, body),
);
