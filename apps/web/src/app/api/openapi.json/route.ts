import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';
import { buildOpenApi } from '../../../server/http/openapi';

let cached: Record<string, unknown> | null = null;

export const GET = handle(api.openapi, async ({ rt }) => {
  cached ??= buildOpenApi(rt.env.publicUrl);
  return Response.json(cached);
});
