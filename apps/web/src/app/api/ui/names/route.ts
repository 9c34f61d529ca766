/**
 * Display names for user ids (requesters, reviewers), for anyone who may read requests. /api/users is the
 * admin's full list (emails, roles); approvers only need to see who asked and who voted.
 */
import { z } from 'zod';
import { handle } from '../../../../server/http/handler';
import { defineRoute } from '../../../../server/http/spec';

const spec = defineRoute({
  method: 'POST',
  path: '/api/ui/names',
  summary: 'Display names and roles for user ids (dashboard)',
  tag: 'users',
  auth: { action: 'request:read' },
  maxBodyBytes: 64 * 1024,
  body: z.object({ ids: z.array(z.string().min(1).max(128)).max(500) }).strict(),
});

export const POST = handle(spec, async ({ rt, body }) => {
  const users = await rt.db.prisma.user.findMany({
    where: { id: { in: [...new Set(body.ids)] } },
    select: { id: true, name: true, role: true },
  });
  return { users: Object.fromEntries(users.map((u) => [u.id, { name: u.name, role: u.role }])) };
});
