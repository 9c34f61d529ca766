import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const POST = handle(routes.enroll, ({ services, body }) => services.agents.enroll(body));
