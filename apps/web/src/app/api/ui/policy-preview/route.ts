import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.uiPolicyPreview, ({ services, body }) =>
  services.requests.previewPolicy(body),
);
