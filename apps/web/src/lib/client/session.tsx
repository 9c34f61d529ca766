'use client';
import { createContext, useContext, type ReactNode } from 'react';
import { can, type Action, type Role } from '@pyreach/protocol/api';

export type { Role };

export interface ClientUser {
  id: string;
  name: string;
  email: string;
  role: Role;
  /** ISO time of the sign-in behind this session (the re-authentication clock). */
  authenticatedAt: string;
  /** How a stale sign-in is renewed before a vote: the password, or the SSO provider again (prompt=login). */
  reauth: { via: 'password' } | { via: 'sso'; providerId: string; name: string };
}

const Ctx = createContext<ClientUser | null>(null);

export function SessionProvider({ user, children }: { user: ClientUser; children: ReactNode }) {
  return <Ctx.Provider value={user}>{children}</Ctx.Provider>;
}

export function useUser(): ClientUser {
  const u = useContext(Ctx);
  if (!u) throw new Error('useUser outside the signed-in shell');
  return u;
}

/**
 * What the UI offers per role: the server's permission table (protocol), so a button shows exactly where the
 * call would be allowed. It only hides controls; the server checks every action again and is the authority.
 */
export function canDo(role: string, action: Action): boolean {
  return can(role, action);
}
