import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.getRequest, async ({ rt, params }) => {
  const request = await rt.services.requests.getRequest(rt.db.prisma, params.id);
  // Output and results live on the executions; the service's summary leaves them out.
  const details = await rt.db.prisma.execution.findMany({
    where: { requestId: params.id },
    select: {
      id: true,
      output: true,
      outputBytes: true,
      result: true,
      errorMessage: true,
      error: true,
      thread: true,
      queuedAt: true,
      sentAt: true,
      stagedAt: true,
      pickedUpAt: true,
      finishedAt: true,
    },
  });
  const byId = new Map(details.map((d) => [d.id, d]));
  return {
    request: { ...request, executions: request.executions.map((e) => ({ ...e, ...byId.get(e.id) })) },
  };
});

export const PATCH = handle(api.updateRequest, async ({ rt, user, params, body }) => {
  const request = await rt.services.requests.updateRequest(
    rt.db.prisma,
    rt.services.actorOf(user),
    params.id,
    body as never,
  );
  rt.ui.requestChanged(request.id, request.state);
  if (request.state === 'approved') rt.dispatcher.wake('approved');
  return { request };
});
