import { handle } from '../../../../../server/http/handler';
import { api } from '../../../../../server/http/api-spec';

export const POST = handle(api.reviewRequest, async ({ rt, user, params, body }) => {
  // The session's creation time is the moment of the last real sign-in: approving needs it to be recent.
  const request = await rt.services.requests.reviewRequest(
    rt.db.prisma,
    rt.services.actorOf(user),
    params.id,
    body,
    {
      authenticatedAt: user.authenticatedAt,
      reauthWindowMinutes: rt.env.reauthMinutes,
    },
  );
  rt.ui.requestChanged(request.id, request.state);
  if (request.state === 'approved') rt.dispatcher.wake('approved');
  return { request };
});
