import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.listScripts, async ({ rt }) => ({ scripts: rt.services.scripts() }));
