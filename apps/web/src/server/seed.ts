/**
 * Idempotent seeding for `npm run -w apps/web seed` and the demo: users with roles, through the users service
 * (audited as the system actor `seed`). Running it twice changes nothing; an existing user keeps its password and
 * gets the requested role.
 */
import { CreateUser } from '@pyreach/protocol/api';
import type { Database } from '@pyreach/db';
import type { Auth } from './auth';
import { ensureUser } from './services/users';

export const SeedUsers = CreateUser.omit({ password: true }).array();
export type SeedUser = CreateUser;

export async function seedAccount(deps: { auth: Auth; db: Database }, u: SeedUser) {
  return ensureUser(deps.db.prisma, u, async (password) =>
    (await deps.auth.$context).password.hash(password),
  );
}

export const DEFAULT_SEED_USERS: Omit<SeedUser, 'password'>[] = [
  { email: 'admin@pyreach.local', name: 'Admin', role: 'admin' },
  { email: 'operator@pyreach.local', name: 'Operator', role: 'operator' },
  { email: 'approver@pyreach.local', name: 'Approver', role: 'approver' },
  { email: 'approver2@pyreach.local', name: 'Second Approver', role: 'approver' },
  { email: 'viewer@pyreach.local', name: 'Viewer', role: 'viewer' },
];
