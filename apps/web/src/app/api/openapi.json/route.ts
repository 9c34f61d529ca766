import { handle } from '../../../server/http/handler';
import { buildOpenApi } from '../../../server/http/openapi';
import { routes } from '@pyreach/protocol/routes';

let cached: Record<string, unknown> | null = null;

export const GET = handle(routes.openapi, async ({ services }) => {
  cached ??= buildOpenApi(services.system.publicUrl);
  return Response.json(cached);
});
