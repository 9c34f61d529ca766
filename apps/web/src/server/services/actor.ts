import { AppError } from './errors';

/** Roles of people, least to most powerful. The database CHECKs the same list. */
export const ROLES = ['viewer', 'operator', 'approver', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** Who did something: a signed-in person, an enrolled agent, or the control plane itself. */
export type Actor =
  | { type: 'user'; id: string; name: string; role: Role }
  | { type: 'agent'; id: string; name: string }
  | { type: 'system'; name: string };

/** The system actor for work the control plane does on its own (dispatch, expiry, migrations). */
export const SYSTEM: Actor = { type: 'system', name: 'control-plane' };

export const ACTIONS = [
  'fleet:read',
  'request:read',
  'request:create',
  'request:review',
  'request:cancel',
  'audit:read',
  'audit:export',
  'agent:manage',
  'user:manage',
  'policy:read',
  'policy:manage',
] as const;
export type Action = (typeof ACTIONS)[number];

/**
 * Which role may do what. Every route checks this table; services re-check the rules that depend on the
 * record (own request, policy's approver roles). Viewers are auditors: they read everything, change nothing.
 * Exports are bulk copies of the trail, so only approvers and admins may take them.
 */
export const PERMISSIONS: Record<Action, readonly Role[]> = {
  'fleet:read': ['viewer', 'operator', 'approver', 'admin'],
  'request:read': ['viewer', 'operator', 'approver', 'admin'],
  'request:create': ['operator', 'admin'],
  'request:review': ['approver', 'admin'],
  'request:cancel': ['operator', 'admin'],
  'audit:read': ['viewer', 'operator', 'approver', 'admin'],
  'audit:export': ['approver', 'admin'],
  'agent:manage': ['admin'],
  'user:manage': ['admin'],
  'policy:read': ['viewer', 'operator', 'approver', 'admin'],
  'policy:manage': ['admin'],
};

/** Whether `role` may perform `action`. */
export function can(role: Role, action: Action): boolean {
  return PERMISSIONS[action].includes(role);
}

/**
 * Throws FORBIDDEN unless the actor may perform `action`. The system actor may do anything; agents may do
 * none of these (they have their own socket events). Returns the user actor, narrowed, for convenience.
 */
export function assertCan(actor: Actor, action: Action): Actor {
  if (actor.type === 'system') return actor;
  if (actor.type === 'user' && can(actor.role, action)) return actor;
  throw new AppError('FORBIDDEN', `${actor.type} ${actor.name} may not ${action}`, {
    userMessage: `your role does not allow ${action}`,
  });
}

/** Throws FORBIDDEN unless the actor is a person allowed to do `action`; returns that person. */
export function requireUser(actor: Actor, action: Action): Extract<Actor, { type: 'user' }> {
  if (actor.type !== 'user') {
    throw new AppError('FORBIDDEN', `${actor.type} ${actor.name} may not ${action}: only people may`, {
      userMessage: `only a signed-in user may ${action}`,
    });
  }
  assertCan(actor, action);
  return actor;
}

/** The audit columns for an actor. */
export function actorColumns(actor: Actor): {
  actorType: Actor['type'];
  actorId: string | null;
  actorName: string;
} {
  return { actorType: actor.type, actorId: actor.type === 'system' ? null : actor.id, actorName: actor.name };
}
