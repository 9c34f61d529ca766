import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.me, async ({ services, user }) => services.sessions.describe(user));
