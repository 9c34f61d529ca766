import { headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { getAppContext } from '../server/context';
import { sessionUser } from '../server/http/handler';

// The dashboard shell; the full dashboard is built on the HTTP API and the /ui socket namespace.
export const dynamic = 'force-dynamic';

export default async function DashboardPage() {
  const user = await sessionUser(getAppContext(), await headers());
  if (!user) redirect('/sign-in');
  return (
    <>
      <nav>
        <strong>Pyreach</strong>
        <span>
          {user.name} ({user.role})
        </span>
      </nav>
      <main>
        <h1>Dashboard</h1>
        <p>Fleet, requests, approvals and audit are available through the API (see /api/openapi.json).</p>
      </main>
    </>
  );
}
