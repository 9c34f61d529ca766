/**
 * Starts the REAL control plane for the browser tests: production Next.js build (built once here when
 * apps/web/.next/BUILD_ID is missing), apps/web/server.ts on a free loopback port, a fresh PGlite data
 * directory, users seeded with the server's own seed command. Returns the teardown.
 *
 * The same server signs in with SSO too (sso.spec.ts): a REAL OpenID Connect provider (support/oidc-idp.ts)
 * starts first — its client's callback needs the control plane's port, so that is picked beforehand — and the
 * server gets OIDC with linking by e-mail on and password sign-in left on, so the other specs sign in as ever.
 * One Next server for every spec: a second one costs ~45 s here. The settings a browser need not see
 * (password sign-in off, linking off) are tested against an API-only server in integration/sso.int.test.ts.
 * PYREACH_E2E_URL is the server, PYREACH_E2E_IDP_URL the provider (its log and users: idpRemote).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { freePort, REPO_ROOT, startControlPlane, USERS } from '../support/control-plane';
import { SSO_CLIENT_SECRET, ssoEnv, startIdp } from '../support/oidc-idp';

export default async function globalSetup(): Promise<() => Promise<void>> {
  const web = path.join(REPO_ROOT, 'apps/web');
  if (!existsSync(path.join(web, '.next', 'BUILD_ID'))) {
    execFileSync(path.join(REPO_ROOT, 'node_modules/.bin/next'), ['build'], {
      cwd: web,
      stdio: 'inherit',
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    });
  }
  const [idpPort, port] = [await freePort(), await freePort()];
  const idp = await startIdp({
    port: idpPort,
    clients: [{ clientId: 'pyreach', clientSecret: SSO_CLIENT_SECRET, baseUrl: `http://127.0.0.1:${port}` }],
    users: {
      sam: { email: 'sam@idp.test', emailVerified: true, name: 'Sam SRE', groups: ['sre'] },
      ada: {
        email: 'ada@idp.test',
        emailVerified: true,
        name: 'Ada Approver',
        groups: ['pyreach-approvers'],
      },
      // Claims the admin's e-mail; the IdP does not vouch for it.
      mallory: { email: USERS.admin, emailVerified: false, name: 'Mallory', groups: ['pyreach-admins'] },
      // The viewer's own IdP identity, verified: joins the password account (linking is on here).
      vic: { email: USERS.viewer, emailVerified: true, name: 'Vic', groups: [] },
    },
  });
  const cp = await startControlPlane(
    'pglite',
    {
      NODE_ENV: 'production',
      PYREACH_UI: 'next',
      BETTER_AUTH_SECRET: 'e2e-secret-e2e-secret-e2e-secret-e2e-secret',
      PYREACH_SEED_FORCE: '1',
      // Short, so the re-authentication prompt can be shown for real (dashboard.spec.ts, last test).
      PYREACH_REAUTH_MINUTES: '1',
      NEXT_TELEMETRY_DISABLED: '1',
      ...ssoEnv(idp.issuer, 'pyreach'),
      PYREACH_OIDC_LINK_BY_EMAIL: 'on',
    },
    { port },
  ).catch(async (err: unknown) => {
    await idp.close();
    throw err;
  });
  process.env.PYREACH_E2E_URL = cp.baseUrl;
  process.env.PYREACH_E2E_IDP_URL = idp.issuer;
  return async () => {
    await cp.cleanup();
    await idp.close();
  };
}
