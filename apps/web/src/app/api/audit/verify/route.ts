import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.verifyAudit, ({ services }) => services.audit.verify());
