import { handle } from '../../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listNotificationDeliveries, ({ services, actor, params, query }) =>
  services.notifications.deliveries(actor, params.id, query),
);
