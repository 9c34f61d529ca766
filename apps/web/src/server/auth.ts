/**
 * Sign-in and sessions (better-auth; why it was chosen is in README.md). Password hashing is better-auth's
 * scrypt; sessions live in the database so any replica can check them; `freshAge` marks how long a sign-in
 * counts as recent, and approving requires a recent one (the review route passes session.createdAt on).
 * Sign-up over HTTP is off: admins create users through /api/users (audited); SSO users are created at their
 * first sign-in, as viewers unless the IdP's claims map to a role (services/sso.ts). An SSO identity never joins an
 * existing account by e-mail unless PYREACH_OIDC_LINK_BY_EMAIL=on and the IdP says the e-mail is verified.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { betterAuth } from 'better-auth';
import { prismaAdapter } from 'better-auth/adapters/prisma';
import { admin } from 'better-auth/plugins/admin';
import { genericOAuth } from 'better-auth/plugins/generic-oauth';
import type { Env } from './env';
import type { Effect } from './services/effects';
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

/** What one call into the auth library carried: the IdP's profile, when a provider's callback ran in it. */
export interface SignInScope {
  idpProfile?: Record<string, unknown>;
  /** What the sign-in hook changed (an IdP role change closes sockets), published once the call answered. */
  effects: Effect[];
}

/**
 * better-auth hands the IdP's profile to mapProfileToUser and creates the session later in the same call; the
 * scope carries the profile between the two (the control plane runs every auth call inside one).
 */
export const signInScope = new AsyncLocalStorage<SignInScope>();

export interface AuthHooks {
  /** After a session was created; `idpProfile`: the claims of the SSO sign-in that created it. */
  onSignIn?: (session: {
    sessionId: string;
    userId: string;
    ipAddress?: string | null;
    idpProfile?: Record<string, unknown>;
  }) => Promise<void>;
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
    disabledPaths: [
      ...DISABLED_PATHS,
      // Password sign-in switched off: the route refuses it with a JSON error first (api/auth route); this is
      // the backstop should anything call the auth library directly.
      ...(env.passwordSignIn ? [] : ['/sign-in/email']),
      // Joining an SSO identity to the signed-in account by hand: the same rule as by e-mail.
      ...(env.oidc?.linkByEmail ? [] : ['/link-social']),
    ],
    account: {
      accountLinking: {
        // Off unless an admin turned it on. On, better-auth still refuses an identity whose provider says
        // email_verified is not true (no provider is listed as trusted, so that check always applies).
        enabled: env.oidc?.linkByEmail === true,
        disableImplicitLinking: env.oidc?.linkByEmail !== true,
        trustedProviders: [],
        // Our password users are created by admins (the e-mail is theirs to vouch for); the IdP's verification
        // is the one that matters here.
        requireLocalEmailVerified: false,
        allowDifferentEmails: false,
      },
    },
    user: {
      // Read with every session (sessions.ts); written only by the users service (temporary passwords).
      additionalFields: {
        mustChangePassword: { type: 'boolean', required: false, defaultValue: false, input: false },
      },
    },
    emailAndPassword: {
      enabled: env.passwordSignIn,
      disableSignUp: true,
      minPasswordLength: 12,
      maxPasswordLength: 256,
    },
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
            const idpProfile = signInScope.getStore()?.idpProfile;
            await opts.hooks?.onSignIn?.({
              sessionId: session.id,
              userId: session.userId,
              ipAddress: session.ipAddress ?? null,
              ...(idpProfile ? { idpProfile } : {}),
            });
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
                  name: env.oidc.name,
                  discoveryUrl: `${env.oidc.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
                  clientId: env.oidc.clientId,
                  clientSecret: env.oidc.clientSecret,
                  scopes: ['openid', 'email', 'profile'],
                  pkce: true,
                  // Claims are verified against the discovery JWKS; never a silently unverified ID token.
                  requireIdTokenVerification: true,
                  // Nothing of the profile is written by the auth library beyond its defaults; the claims are kept
                  // for the sign-in hook, which maps them to a role through the audited service.
                  mapProfileToUser: (profile) => {
                    const scope = signInScope.getStore();
                    if (scope) scope.idpProfile = { ...profile };
                    return {};
                  },
                },
              ],
            }),
          ]
        : []),
    ],
  });
}

export type Auth = ReturnType<typeof createAuth>;
