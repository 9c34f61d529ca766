import { headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { httpPlane } from '../../server/http/plane';
import { ChangePasswordForm } from './change-password-form';

// Depends on the session cookie.
export const dynamic = 'force-dynamic';

/**
 * Where a person signed in with an admin-set temporary password lands (the signed-in layout sends them here,
 * and the API refuses everything but /api/me until they are done). Anyone signed in may change theirs here.
 */
export default async function ChangePasswordPage() {
  const user = await httpPlane().services.sessions.fromHeaders(await headers());
  if (!user) redirect('/sign-in?next=/change-password');
  return <ChangePasswordForm email={user.email} required={user.mustChangePassword} />;
}
