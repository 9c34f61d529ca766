import { can, isRole, type Action, type Role } from '@pyreach/protocol/api';
import { AppError } from './app-error';

// Roles, actions and the permission table are API shapes: one list, in protocol (the browser reads it too).
export { ACTIONS, PERMISSIONS, ROLES, can, isRole, type Action, type Role } from '@pyreach/protocol/api';

/**
 * Who did something: a signed-in person, a service account acting through one of its API tokens (`ownerId`: the
 * person who counts as its requester for four-eyes), an enrolled agent, or the control plane itself.
 */
export type Actor =
  | { type: 'user'; id: string; name: string; role: Role }
  | { type: 'service'; id: string; name: string; role: Role; ownerId: string; tokenId: string }
  | { type: 'agent'; id: string; name: string }
  | { type: 'system'; name: string };

/** The system actor for work the control plane does on its own (dispatch, expiry, migrations). */
export const SYSTEM: Actor = { type: 'system', name: 'control-plane' };

/**
 * Throws FORBIDDEN unless the actor may perform `action`. The system actor may do anything; agents may do
 * none of these (they have their own socket events). Returns the user actor, narrowed, for convenience.
 */
export function assertCan(actor: Actor, action: Action): Actor {
  if (actor.type === 'system') return actor;
  if (actor.type === 'service' && action === 'request:review') throw personRequired(actor);
  if ((actor.type === 'user' || actor.type === 'service') && can(actor.role, action)) return actor;
  throw new AppError('FORBIDDEN', `${actor.type} ${actor.name} may not ${action}`, {
    userMessage: `your role does not allow ${action}`,
  });
}

/** A review (approve/reject) is always a person with a recent sign-in, never a token. */
function personRequired(actor: Actor): AppError {
  return new AppError('PERSON_REQUIRED', `${actor.type} ${actor.name} may not review: only people may`, {
    userMessage: 'reviews need a person signed in recently; API tokens can never approve or reject',
  });
}

/**
 * Throws FORBIDDEN unless the actor is a person allowed to do `action`, or a service account whose role allows
 * it (never a review: PERSON_REQUIRED); returns the person on whose behalf it acts — for a service account its
 * owner with the account's role, so a request a token files has the owner as requester (four-eyes holds: the
 * owner cannot approve it) and cancel's "own request" rule applies to the owner's requests. Audit with the
 * actor itself, which names the service account and the token.
 */
export function requireUser(actor: Actor, action: Action): Extract<Actor, { type: 'user' }> {
  if (actor.type === 'service') {
    assertCan(actor, action);
    return { type: 'user', id: actor.ownerId, name: actor.name, role: actor.role };
  }
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

/** What an audit event adds to its data for an actor: the token a service account used. */
export function actorData(actor: Actor): { tokenId?: string } {
  return actor.type === 'service' ? { tokenId: actor.tokenId } : {};
}

/** The audit actor for a signed-in person (a role the table does not know reads as viewer: it may change nothing). */
export function userActor(user: {
  id: string;
  email: string;
  role: string;
}): Extract<Actor, { type: 'user' }> {
  return { type: 'user', id: user.id, name: user.email, role: isRole(user.role) ? user.role : 'viewer' };
}
