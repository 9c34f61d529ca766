import { handle, HttpError } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.listRequests, async ({ rt, query }) => {
  const page = await rt.services.requests.listRequests(rt.db.prisma, query);
  return { requests: page.items, nextCursor: page.nextCursor };
});

export const POST = handle(api.createRequest, async ({ rt, user, body }) => {
  let code = body.code;
  if (body.kind === 'library' && code === undefined) {
    const script = rt.services.scriptSource(body.scriptId ?? '');
    if (script === null)
      throw new HttpError(400, 'VALIDATION', `body.scriptId: unknown script '${body.scriptId ?? ''}'`);
    code = script;
  }
  if (code === undefined) throw new HttpError(400, 'VALIDATION', 'body.code: custom requests need code');
  const request = await rt.services.requests.createRequest(rt.db.prisma, rt.services.actorOf(user), {
    ...body,
    code,
  } as never);
  rt.ui.requestChanged(request.id, request.state);
  // Policies with 0 approvals approve on creation.
  if (request.state === 'approved') rt.dispatcher.wake('approved');
  return { request };
});
