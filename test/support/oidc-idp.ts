/**
 * A REAL OpenID Connect provider for tests (node-oidc-provider, in memory) on a free loopback port: one
 * confidential client per control plane, users whose claims (email, email_verified, groups) tests change
 * while it runs, a minimal login page (username only: the IdP's own password is not what is under test), and
 * a log of every authorization request's parameters (so a test can check prompt=login and max_age=0 arrived).
 *
 * The login page may backdate the login (`ago` seconds): the ID token's auth_time is then that old, as after a
 * long-lived IdP session — how the re-authentication window is tested without waiting it out.
 *
 * The provider may run in another process than the test (Playwright's global setup starts it for the one e2e
 * server): `/_test/log` answers the log and `PUT /_test/users/<sub>` changes a user's claims — see idpRemote.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import Provider, { type Configuration } from 'oidc-provider';

export interface IdpUser {
  email: string;
  emailVerified: boolean;
  name: string;
  groups: string[];
}

export interface IdpClient {
  clientId: string;
  clientSecret: string;
  /** The control plane's public URL; its callback is `${baseUrl}/api/auth/callback/${providerId}`. */
  baseUrl: string;
  providerId?: string;
}

export interface TestIdp {
  issuer: string;
  users: Map<string, IdpUser>;
  /** Query parameters of every authorization request (GET /auth), oldest first. */
  authRequests: Record<string, string>[];
  /** Logins completed at the login page: who, and how far back the login was dated. */
  logins: { sub: string; agoSeconds: number }[];
  close(): Promise<void>;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function form(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return new URLSearchParams(body);
}

/** Starts the provider on `port` (pick one with freePort; the clients' redirect URIs must be known first). */
export async function startIdp(opts: {
  port: number;
  clients: IdpClient[];
  users: Record<string, IdpUser>;
}): Promise<TestIdp> {
  const issuer = `http://127.0.0.1:${opts.port}`;
  const users = new Map(Object.entries(opts.users));
  const authRequests: Record<string, string>[] = [];
  const logins: { sub: string; agoSeconds: number }[] = [];
  const config: Configuration = {
    clients: opts.clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      redirect_uris: [`${c.baseUrl}/api/auth/callback/${c.providerId ?? 'oidc'}`],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_post',
      // auth_time in every ID token: the control plane dates an SSO sign-in by it.
      require_auth_time: true,
    })),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'groups'],
    },
    async findAccount(_ctx, sub) {
      if (!users.has(sub)) return undefined;
      return {
        accountId: sub,
        // Read at every token and userinfo call: a change to the user shows at the next sign-in.
        async claims() {
          const u = users.get(sub)!;
          return { sub, email: u.email, email_verified: u.emailVerified, name: u.name, groups: u.groups };
        },
      };
    },
    // The control plane is a first-party client: consent is implied (no consent page to click through).
    async loadExistingGrant(ctx) {
      const { Grant } = ctx.oidc.provider;
      const existing = ctx.oidc.session?.grantIdFor(ctx.oidc.client!.clientId);
      if (existing) {
        const grant = await Grant.find(existing);
        if (grant) return grant;
      }
      const grant = new Grant({
        clientId: ctx.oidc.client!.clientId,
        accountId: ctx.oidc.session!.accountId!,
      });
      grant.addOIDCScope('openid email profile');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
      await grant.save();
      return grant;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: { devInteractions: { enabled: false } },
    cookies: { keys: ['test-idp-cookie-key-test-idp-cookie-key'] },
    pkce: { required: () => true },
  };
  const provider = new Provider(issuer, config);
  const callback = provider.callback();

  async function interaction(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(url.pathname);
    if (!m) return false;
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'POST' && m[2]) {
      const f = await form(req);
      const sub = f.get('login') ?? '';
      if (!users.has(sub)) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`no such user ${sub}`);
        return true;
      }
      const agoSeconds = Number(f.get('ago') ?? '0') || 0;
      logins.push({ sub, agoSeconds });
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: sub, ts: Math.floor(Date.now() / 1000) - agoSeconds } },
        { mergeWithLastSubmission: false },
      );
      return true;
    }
    const uid = esc(details.uid);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html>
<html><head><title>Test IdP</title></head><body>
<h1>Test IdP sign-in</h1>
<p data-testid="idp-prompt">${esc(details.prompt.name)}</p>
<form method="post" action="/interaction/${uid}/login">
  <label>Username <input name="login" autofocus></label>
  <label>Signed in seconds ago <input name="ago" value="0"></label>
  <button type="submit">Continue</button>
</form></body></html>`);
    return true;
  }

  /** The test-only control surface, for a test in another process (idpRemote). */
  async function control(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    if (req.method === 'GET' && url.pathname === '/_test/log') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ authRequests, logins }));
      return true;
    }
    const m = /^\/_test\/users\/([^/]+)$/.exec(url.pathname);
    if (req.method !== 'PUT' || !m) return false;
    const user = users.get(decodeURIComponent(m[1]!));
    if (!user) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such user');
      return true;
    }
    let body = '';
    for await (const chunk of req) body += String(chunk);
    Object.assign(user, JSON.parse(body) as Partial<IdpUser>);
    res.writeHead(204).end();
    return true;
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', issuer);
    if (req.method === 'GET' && url.pathname === '/auth')
      authRequests.push(Object.fromEntries(url.searchParams));
    control(req, res, url)
      .then(async (handled) => handled || interaction(req, res, url))
      .then((handled) => {
        if (!handled) void callback(req, res);
      })
      .catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  return {
    issuer,
    users,
    authRequests,
    logins,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The log and the users of a provider started in another process (the e2e global setup's), over HTTP. */
export function idpRemote(issuer: string): {
  log(): Promise<{ authRequests: Record<string, string>[]; logins: { sub: string; agoSeconds: number }[] }>;
  setUser(sub: string, patch: Partial<IdpUser>): Promise<void>;
} {
  return {
    async log() {
      const res = await fetch(`${issuer}/_test/log`);
      if (!res.ok) throw new Error(`IdP log: ${res.status}`);
      return (await res.json()) as Awaited<ReturnType<ReturnType<typeof idpRemote>['log']>>;
    },
    async setUser(sub, patch) {
      const res = await fetch(`${issuer}/_test/users/${encodeURIComponent(sub)}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(patch),
      });
      if (res.status !== 204) throw new Error(`IdP user ${sub}: ${res.status}`);
    },
  };
}

/** The client secret and claims → roles map the e2e server and the SSO integration test configure. */
export const SSO_CLIENT_SECRET = 'sso-client-secret-sso-client-secret';
export const SSO_ROLE_MAP = {
  groups: { 'pyreach-admins': 'admin', 'pyreach-approvers': 'approver', sre: 'operator' },
};

/** A control plane's OIDC settings for `clientId` at `issuer` (provider id `oidc`, shown as "Test IdP"). */
export function ssoEnv(issuer: string, clientId: string): Record<string, string> {
  return {
    OIDC_ISSUER: issuer,
    OIDC_CLIENT_ID: clientId,
    OIDC_CLIENT_SECRET: SSO_CLIENT_SECRET,
    OIDC_PROVIDER_NAME: 'Test IdP',
    PYREACH_OIDC_ROLE_MAP: JSON.stringify(SSO_ROLE_MAP),
  };
}
