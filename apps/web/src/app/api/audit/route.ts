import { handle } from '../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.queryAudit, ({ services, query }) => services.audit.query(query));
