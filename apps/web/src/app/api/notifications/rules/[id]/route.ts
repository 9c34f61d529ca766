import { handle } from '../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const PATCH = handle(routes.updateNotificationRule, ({ services, actor, params, body }) =>
  services.notifications.update(actor, params.id, body),
);

export const DELETE = handle(routes.deleteNotificationRule, ({ services, actor, params }) =>
  services.notifications.remove(actor, params.id),
);
