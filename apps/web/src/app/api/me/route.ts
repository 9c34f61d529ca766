import { handle } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';

export const GET = handle(api.me, async ({ rt, user }) => {
  const freshUntil = new Date(user.authenticatedAt.getTime() + rt.env.reauthMinutes * 60_000);
  return {
    user: { id: user.id, email: user.email, name: user.name, role: user.role },
    authenticatedAt: user.authenticatedAt.toISOString(),
    freshUntil: freshUntil.toISOString(),
    fresh: freshUntil.getTime() > Date.now(),
  };
});
