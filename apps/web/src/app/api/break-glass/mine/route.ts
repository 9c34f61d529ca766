import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.myBreakGlass, ({ services, user }) => services.breakGlass.mine(user));
