/**
 * Starts the REAL control plane for the browser tests: production Next.js build (built once here when
 * apps/web/.next/BUILD_ID is missing), apps/web/server.ts on a free loopback port, a fresh PGlite data
 * directory, users seeded with the server's own seed command. Returns the teardown.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startControlPlane } from '../support/control-plane';

export default async function globalSetup(): Promise<() => Promise<void>> {
  const web = path.join(REPO_ROOT, 'apps/web');
  if (!existsSync(path.join(web, '.next', 'BUILD_ID'))) {
    execFileSync(path.join(REPO_ROOT, 'node_modules/.bin/next'), ['build'], {
      cwd: web,
      stdio: 'inherit',
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    });
  }
  const cp = await startControlPlane('pglite', {
    NODE_ENV: 'production',
    PYREACH_UI: 'next',
    BETTER_AUTH_SECRET: 'e2e-secret-e2e-secret-e2e-secret-e2e-secret',
    PYREACH_SEED_FORCE: '1',
    // Short, so the re-authentication prompt can be shown for real (dashboard.spec.ts, last test).
    PYREACH_REAUTH_MINUTES: '1',
    NEXT_TELEMETRY_DISABLED: '1',
  });
  process.env.PYREACH_E2E_URL = cp.baseUrl;
  return async () => {
    await cp.cleanup();
  };
}
