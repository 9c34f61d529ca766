import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.listScripts, async ({ services }) => services.scripts.list());
