import { handle } from '../../../../../server/http/handler';
import { api } from '../../../../../server/http/api-spec';

export const POST = handle(api.cancelRequest, async ({ rt, user, params, body }) => {
  const request = await rt.services.requests.cancelRequest(
    rt.db.prisma,
    rt.services.actorOf(user),
    params.id,
    body.reason,
  );
  rt.ui.requestChanged(request.id, request.state);
  rt.dispatcher.wake('cancelled');
  return { request };
});
