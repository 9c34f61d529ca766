import { errorResponse, handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';
import { notReadyMessage } from '../../../../server/readiness';

/**
 * 200 when the database (and Redis, when configured) answer; 503 NOT_READY naming the failing check, with every
 * check in `error.details`. Answered, not thrown: a probe failing every 10 s is a state, not an error to log.
 */
export const GET = handle(routes.healthReady, async ({ plane }) => {
  const r = await plane.readiness();
  return r.ready ? r : errorResponse('NOT_READY', notReadyMessage(r), r);
});
