/**
 * Sign-in and sessions (better-auth; why it was chosen is in README.md). Password hashing is better-auth's
 * scrypt; sessions live in the database so any replica can check them; `freshAge` marks how long a sign-in
 * counts as recent, and approving requires a recent one (the review route passes session.createdAt on).
 * Sign-up over HTTP is off: admins create users through /api/users (audited), OIDC users arrive as viewers.
 */
import { betterAuth } from 'better-auth';
import { prismaAdapter } from 'better-auth/adapters/prisma';
import { admin } from 'better-auth/plugins/admin';
import { genericOAuth } from 'better-auth/plugins/generic-oauth';
import type { Env } from './env';
import type { Logger } from './logger';
import { CLIENT_IP_HEADER } from './http/plane';

/**
 * The admin plugin's own user-management endpoints would change roles and users without our audit trail;
 * they stay off and /api/users does that work through the services.
 */
const DISABLED_PATHS = [
  '/sign-up/email',
  '/admin/set-role',
  '/admin/create-user',
  '/admin/update-user',
  '/admin/remove-user',
  '/admin/set-user-password',
  '/admin/impersonate-user',
  '/admin/stop-impersonating',
  '/admin/ban-user',
  '/admin/unban-user',
  // Self-service profile changes: a renamed approver would be shown to colleagues under a name nobody checked.
  '/update-user',
  '/change-email',
  '/delete-user',
];

type PrismaLike = Parameters<typeof prismaAdapter>[0];

export interface AuthHooks {
  onSignIn?: (session: { userId: string; ipAddress?: string | null }) => Promise<void>;
}

export function createAuth(opts: { env: Env; prisma: PrismaLike; log: Logger; hooks?: AuthHooks }) {
  const { env, log } = opts;
  return betterAuth({
    appName: 'Pyreach',
    baseURL: env.publicUrl,
    basePath: '/api/auth',
    secret: env.authSecret,
    trustedOrigins: [env.publicUrl],
    database: prismaAdapter(opts.prisma, { provider: 'postgresql' }),
    disabledPaths: DISABLED_PATHS,
    user: {
      // Read with every session (sessions.ts); written only by the users service (temporary passwords).
      additionalFields: {
        mustChangePassword: { type: 'boolean', required: false, defaultValue: false, input: false },
      },
    },
    emailAndPassword: { enabled: true, disableSignUp: true, minPasswordLength: 12, maxPasswordLength: 256 },
    session: {
      expiresIn: 12 * 60 * 60,
      updateAge: 60 * 60,
      // "Fresh" = signed in within the re-authentication window; better-auth enforces it on its own
      // sensitive endpoints and we apply the same window to approvals.
      freshAge: env.reauthMinutes * 60,
      cookieCache: { enabled: false },
    },
    rateLimit: {
      enabled: true,
      // Counters in the database so the limit holds across replicas. This is the coarse per-IP backstop;
      // the per IP + email limit is checked in front of sign-in (see http/login-limit.ts).
      storage: 'database',
      window: 60,
      max: 600,
      customRules: {
        '/sign-in/*': { window: 60, max: 60 },
        '/get-session': false,
      },
    },
    advanced: {
      useSecureCookies: env.secureCookies,
      cookiePrefix: 'pyreach',
      ipAddress: { ipAddressHeaders: [CLIENT_IP_HEADER] },
      defaultCookieAttributes: { httpOnly: true, sameSite: 'lax', secure: env.secureCookies },
    },
    logger: {
      level: 'warn',
      log: (level, message) => {
        if (level === 'error') log.error({ source: 'better-auth' }, message);
        else log.warn({ source: 'better-auth' }, message);
      },
    },
    databaseHooks: {
      session: {
        create: {
          after: async (session) => {
            await opts.hooks?.onSignIn?.({ userId: session.userId, ipAddress: session.ipAddress ?? null });
          },
        },
      },
    },
    plugins: [
      admin({ defaultRole: 'viewer', adminRoles: ['admin'] }),
      ...(env.oidc
        ? [
            genericOAuth({
              config: [
                {
                  providerId: env.oidc.providerId,
                  discoveryUrl: `${env.oidc.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
                  clientId: env.oidc.clientId,
                  clientSecret: env.oidc.clientSecret,
                  scopes: ['openid', 'email', 'profile'],
                  pkce: true,
                },
              ],
            }),
          ]
        : []),
    ],
  });
}

export type Auth = ReturnType<typeof createAuth>;
