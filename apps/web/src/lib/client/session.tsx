'use client';
import { createContext, useContext, type ReactNode } from 'react';

export type Role = 'viewer' | 'operator' | 'approver' | 'admin';

export interface ClientUser {
  id: string;
  name: string;
  email: string;
  role: Role | string;
  /** ISO time of the sign-in behind this session (the re-authentication clock). */
  authenticatedAt: string;
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
 * What the UI offers per role. It only hides controls; the server checks every action again and is the
 * authority (a hidden button is never the protection).
 */
export function canDo(role: string, what: 'request' | 'review' | 'admin' | 'audit'): boolean {
  switch (what) {
    case 'request':
      return role === 'operator' || role === 'admin';
    case 'review':
      return role === 'approver' || role === 'admin';
    case 'admin':
      return role === 'admin';
    case 'audit':
      return true;
  }
}
