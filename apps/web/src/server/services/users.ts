import type { PrismaClient, User } from '@pyreach/db';
import { isRole, requireUser, type Actor } from './actor';
import { appendAudit } from './audit';
import { AppError } from './errors';

/**
 * Changes a user's role (admin only, audited). The last admin cannot be demoted — the admin rows are locked
 * first, so two admins demoting each other at once cannot both succeed.
 */
export async function setRole(db: PrismaClient, actor: Actor, userId: string, role: string): Promise<User> {
  requireUser(actor, 'user:manage');
  if (!isRole(role))
    throw new AppError('VALIDATION', `unknown role ${role}`, {
      userMessage: 'role must be viewer, operator, approver or admin',
    });
  return db.$transaction(async (tx) => {
    const admins = await tx.$queryRawUnsafe<{ id: string }[]>(
      `SELECT id FROM "user" WHERE role = 'admin' ORDER BY id FOR UPDATE`,
    );
    const user = await tx.user.findUnique({ where: { id: userId } });
    if (!user) throw new AppError('NOT_FOUND', `user ${userId} not found`, { userMessage: 'user not found' });
    if (user.role === role) return user;
    if (user.role === 'admin' && admins.length <= 1) {
      throw new AppError('CONFLICT', `refusing to demote ${userId}, the last admin`, {
        userMessage: 'the last admin cannot be demoted',
      });
    }
    const updated = await tx.user.update({ where: { id: userId }, data: { role } });
    await appendAudit(tx, {
      actor,
      action: 'user.role.set',
      subjectType: 'user',
      subjectId: userId,
      data: { from: user.role, to: role },
    });
    return updated;
  });
}
