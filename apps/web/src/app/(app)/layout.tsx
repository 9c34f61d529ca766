import type { ReactNode } from 'react';
import { headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { httpPlane } from '../../server/http/plane';
import { AppShell } from '../../components/shell/app-shell';
import { SessionProvider } from '../../lib/client/session';

// Every page of the signed-in shell depends on the session cookie.
export const dynamic = 'force-dynamic';

export default async function SignedInLayout({ children }: { children: ReactNode }) {
  const h = await headers();
  const plane = httpPlane();
  const user = await plane.services.sessions.fromHeaders(h);
  if (!user) redirect('/sign-in');
  // An admin-set temporary password: nothing of the app until the person has chosen their own.
  if (user.mustChangePassword) redirect('/change-password');
  const { reauth } = await plane.services.sessions.describe(user);
  const clientUser = {
    id: user.id,
    name: user.name,
    email: user.email,
    role: user.role,
    authenticatedAt: user.authenticatedAt.toISOString(),
    reauth:
      reauth === 'sso' && plane.signIn.sso
        ? { via: 'sso' as const, ...plane.signIn.sso }
        : { via: 'password' as const },
  };
  return (
    <SessionProvider user={clientUser}>
      <AppShell>{children}</AppShell>
    </SessionProvider>
  );
}
