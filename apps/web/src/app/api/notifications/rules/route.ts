import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listNotificationRules, ({ services, actor }) =>
  services.notifications.list(actor),
);

export const POST = handle(routes.createNotificationRule, ({ services, actor, body }) =>
  services.notifications.create(actor, body),
);
