import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.healthLive, ({ services }) => Promise.resolve(services.system.live()));
