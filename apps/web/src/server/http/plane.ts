/**
 * What HTTP route modules reach of the running control plane, and the one accessor for it. A global is needed
 * because Next.js bundles route handlers and pages into a module graph of their own: a route that imported
 * the database (or the control plane's module) would get a second instance — a second PGlite on the same
 * directory. So the composition root (../control-plane.ts) installs this narrow view once, on globalThis, and
 * route modules read it through `httpPlane()`; they import only this file and types from the server.
 */
import type { Readiness } from '@pyreach/protocol/api';
import type { Logger } from '../logger';
import type { Inflight } from '../inflight';
import type { Services } from '../services';
import type { Classified } from '../services/app-error';
import type { Effect } from '../services/effects';

/** Header the custom server sets from the socket's peer address (any client-sent value is dropped first). */
export const CLIENT_IP_HEADER = 'x-pyreach-client-ip';

export interface HttpPlane {
  services: Services;
  /** After a service's commit: what it changed, to the Publisher (/ui pushes, agent commands, wake-ups). */
  publish(effects: readonly Effect[]): void;
  /** The auth library's own endpoints (sign-in, sign-out, session, OIDC callbacks). */
  authHandler(req: Request): Promise<Response>;
  /** How people may sign in (the sign-in page asks; the email route is refused when password is off). */
  signIn: { password: boolean; sso: { providerId: string; name: string } | null };
  /** Counts in-flight work (streams that outlive their handler) for the graceful shutdown. */
  inflight: Inflight;
  log: Logger;
  /** What anything thrown stands for, as an AppError (services/errors.ts: it knows the database's errors). */
  classify(err: unknown): Classified;
  isShuttingDown(): boolean;
  /** This replica's readiness: the database, and Redis when configured (../readiness.ts). */
  readiness(): Promise<Readiness>;
}

const KEY = Symbol.for('pyreach.httpPlane');
type Holder = { [KEY]?: HttpPlane };

export function installHttpPlane(plane: HttpPlane | undefined): void {
  (globalThis as Holder)[KEY] = plane;
}

export function httpPlane(): HttpPlane {
  const plane = (globalThis as Holder)[KEY];
  if (!plane)
    throw new Error(
      'Pyreach control plane is missing: start the app with server.ts (npm run dev / npm start), not `next dev`',
    );
  return plane;
}
