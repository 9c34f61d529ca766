import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.previewSelector, ({ services, body }) => services.fleet.preview(body));
