import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.uiPreflight, ({ services, body }) =>
  services.requests.previewPreflight(body),
);
