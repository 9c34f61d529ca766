import { handle, HttpError } from '../../../server/http/handler';
import { api } from '../../../server/http/api-spec';
import { ensurePasswordUser } from '../../../server/auth';

export const GET = handle(api.listUsers, async ({ rt }) => {
  const users = await rt.db.prisma.user.findMany({
    orderBy: { createdAt: 'asc' },
    select: { id: true, email: true, name: true, role: true, banned: true, createdAt: true },
  });
  return { users };
});

export const POST = handle(api.createUser, async ({ rt, user, body }) => {
  const created = await ensurePasswordUser(rt.auth, body);
  if (!created.created) throw new HttpError(409, 'CONFLICT', 'a user with this email already exists');
  await rt.services.users.setRole(rt.db.prisma, rt.services.actorOf(user), created.id, body.role);
  await rt.services.audit.recordAudit(rt.db.prisma, {
    actor: rt.services.actorOf(user),
    action: 'user.create',
    subjectType: 'user',
    subjectId: created.id,
    data: { email: body.email.toLowerCase(), role: body.role },
  });
  return { user: { id: created.id, email: body.email.toLowerCase(), name: body.name, role: body.role } };
});
