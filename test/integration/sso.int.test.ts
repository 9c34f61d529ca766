/**
 * SSO settings a browser need not see, against the real server process (API-only: no Next build, starts in
 * seconds) and a REAL OpenID Connect provider (support/oidc-idp.ts), the whole authorization-code flow driven
 * over HTTP with fetch (redirects followed by hand, one cookie jar per origin, as a browser keeps them):
 * password sign-in switched off refuses the e-mail route, and with linking by e-mail off (the default) an IdP
 * identity whose verified e-mail is the admin's gets no session and no account. The browser cases (the button,
 * the mapped role, group changes, re-authentication) are e2e/sso.spec.ts on the one e2e server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../support/api';
import {
  freePort,
  SEED_PASSWORD,
  startControlPlane,
  USERS,
  type ControlPlane,
} from '../support/control-plane';
import { SSO_CLIENT_SECRET, ssoEnv, startIdp, type TestIdp } from '../support/oidc-idp';

/** A browser's worth of cookies, by origin (the provider and the control plane share 127.0.0.1). */
class Jar {
  private readonly byOrigin = new Map<string, Map<string, string>>();
  header(u: URL): string {
    return [...(this.byOrigin.get(u.origin) ?? new Map<string, string>())]
      .map(([k, v]) => `${k}=${v}`)
      .join('; ');
  }
  store(u: URL, res: Response): void {
    let jar = this.byOrigin.get(u.origin);
    if (!jar) this.byOrigin.set(u.origin, (jar = new Map()));
    for (const set of res.headers.getSetCookie()) {
      const pair = set.split(';')[0]!;
      const i = pair.indexOf('=');
      const [name, value] = [pair.slice(0, i).trim(), pair.slice(i + 1)];
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(set)) jar.delete(name);
      else jar.set(name, value);
    }
  }
}

/** Sends the request and follows redirects like a browser (GET after a redirect); the last response and URL. */
async function go(jar: Jar, url: URL, init: RequestInit = {}): Promise<{ res: Response; url: URL }> {
  for (let hops = 0; hops < 20; hops++) {
    const headers = { ...(init.headers as Record<string, string> | undefined), cookie: jar.header(url) };
    const res = await fetch(url, {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(30_000),
    });
    jar.store(url, res);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) return { res, url };
    await res.body?.cancel();
    url = new URL(location, url);
    init = {};
  }
  throw new Error(`too many redirects at ${url.href}`);
}

/** The sign-in page's provider button, the provider's login page as `who`, and back to the control plane. */
async function ssoSignIn(base: string, who: string): Promise<{ cookie: string; landed: URL }> {
  const jar = new Jar();
  const started = await go(jar, new URL('/api/auth/sign-in/social', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: base },
    body: JSON.stringify({ provider: 'oidc', callbackURL: '/', errorCallbackURL: '/sign-in' }),
  });
  assert.equal(started.res.status, 200);
  const { url } = (await started.res.json()) as { url: string };
  const page = await go(jar, new URL(url));
  const html = await page.res.text();
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  assert.ok(action, `the provider's login page, got ${page.res.status}: ${html.slice(0, 300)}`);
  const done = await go(jar, new URL(action, page.url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login: who, ago: '0' }).toString(),
  });
  await done.res.body?.cancel();
  assert.equal(done.url.origin, base, `back at the control plane, not ${done.url.href}`);
  return { cookie: jar.header(new URL(base)), landed: done.url };
}

describe('SSO with password sign-in off and linking by e-mail off (API-only server)', () => {
  let idp: TestIdp;
  let cp: ControlPlane;

  before(async () => {
    const [idpPort, port] = [await freePort(), await freePort()];
    idp = await startIdp({
      port: idpPort,
      clients: [
        { clientId: 'pyreach', clientSecret: SSO_CLIENT_SECRET, baseUrl: `http://127.0.0.1:${port}` },
      ],
      users: {
        // An admin by the role map, with an e-mail of its own: the control case, and who looks at the users.
        root: { email: 'root@idp.test', emailVerified: true, name: 'Root', groups: ['pyreach-admins'] },
        // Claims the admin's e-mail and the IdP says it is verified: still no link where linking is off.
        eve: { email: USERS.admin, emailVerified: true, name: 'Eve', groups: ['pyreach-admins'] },
      },
    });
    cp = await startControlPlane(
      'pglite',
      { ...ssoEnv(idp.issuer, 'pyreach'), PYREACH_PASSWORD_SIGNIN: 'off' },
      { port },
    );
  });

  after(async () => {
    await cp?.cleanup();
    await idp?.close();
  });

  it('refuses the e-mail route with PASSWORD_SIGNIN_DISABLED, even with the right password', async () => {
    const res = await new ApiClient(cp.baseUrl).signIn(USERS.admin, SEED_PASSWORD);
    assert.equal(res.status, 403);
    assert.equal(!res.body.ok && res.body.error.code, 'PASSWORD_SIGNIN_DISABLED');
    assert.equal(res.headers.getSetCookie().length, 0, 'no session cookie');
  });

  it("gives an IdP identity with the admin's verified e-mail no session and no account, while SSO itself works", async () => {
    // The control: the flow over fetch does sign in (a mapped admin with an e-mail of its own).
    const root = await ssoSignIn(cp.baseUrl, 'root');
    const admin = new ApiClient(cp.baseUrl);
    admin.cookie = root.cookie;
    const me = await admin.ok(admin.get<{ user: { email: string; role: string } }>('/api/me'));
    assert.deepEqual([me.user.email, me.user.role], ['root@idp.test', 'admin']);

    const eve = await ssoSignIn(cp.baseUrl, 'eve');
    assert.equal(eve.landed.pathname, '/sign-in');
    assert.equal(eve.landed.searchParams.get('error'), 'account_not_linked');
    const as = new ApiClient(cp.baseUrl);
    as.cookie = eve.cookie;
    assert.equal((await as.get('/api/me')).status, 401, 'no session of any kind');

    const users = await admin.ok(admin.get<{ users: { email: string; role: string }[] }>('/api/users'));
    assert.deepEqual(
      users.users.filter((u) => u.email === USERS.admin).map((u) => u.role),
      ['admin'],
      'the one password account, untouched',
    );
    const audit = await admin.ok(
      admin.get<{ events: { data: Record<string, unknown> }[] }>('/api/audit?action=user.role.set&limit=200'),
    );
    assert.equal(audit.events.filter((e) => e.data.email === USERS.admin).length, 0, 'no IdP role change');
    assert.deepEqual(
      idp.logins.map((l) => l.sub),
      ['root', 'eve'],
      'both went through the provider',
    );
  });
});
