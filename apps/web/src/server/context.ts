/**
 * The running server's shared state. server.ts builds it once and publishes it on globalThis, because Next.js
 * bundles route handlers into their own module graph: importing the database from a route would open a
 * second PGlite on the same directory. Routes import only *types* from the server and reach the live
 * instances through getAppContext().
 */
import type { Runtime } from './runtime';

const KEY = Symbol.for('pyreach.appContext');

type Holder = { [KEY]?: Runtime };

export function setAppContext(ctx: Runtime | undefined): void {
  (globalThis as Holder)[KEY] = ctx;
}

export function getAppContext(): Runtime {
  const ctx = (globalThis as Holder)[KEY];
  if (!ctx)
    throw new Error(
      'Pyreach server context is missing: start the app with server.ts (npm run dev / npm start), not `next dev`',
    );
  return ctx;
}
