/**
 * Idempotent seed factories, shared by `npm run -w apps/web seed` and the tests: users with roles.
 * Running them twice changes nothing; an existing user keeps its password and gets the requested role.
 */
import type { Database } from '@pyreach/db';
import { ensurePasswordUser, ROLES, type Auth, type RoleName } from './auth';

export interface SeedUser {
  email: string;
  name: string;
  role: RoleName;
  password: string;
}

export async function seedUser(
  deps: { auth: Auth; db: Database; setRole: (userId: string, role: RoleName) => Promise<void> },
  u: SeedUser,
) {
  if (!ROLES.includes(u.role))
    throw new Error(`unknown role '${u.role}' (expected one of ${ROLES.join(', ')})`);
  const { id, created } = await ensurePasswordUser(deps.auth, u);
  const current = await deps.db.prisma.user.findUnique({ where: { id }, select: { role: true } });
  if (current?.role !== u.role) await deps.setRole(id, u.role);
  return { id, created };
}

export const DEFAULT_SEED_USERS: Omit<SeedUser, 'password'>[] = [
  { email: 'admin@pyreach.local', name: 'Admin', role: 'admin' },
  { email: 'operator@pyreach.local', name: 'Operator', role: 'operator' },
  { email: 'approver@pyreach.local', name: 'Approver', role: 'approver' },
  { email: 'approver2@pyreach.local', name: 'Second Approver', role: 'approver' },
  { email: 'viewer@pyreach.local', name: 'Viewer', role: 'viewer' },
];
