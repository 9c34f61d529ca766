/**
 * Single sign-on in Chromium against a REAL OpenID Connect provider (node-oidc-provider, started here): the
 * sign-in page's provider button, claims → roles (audited, sockets closed at a change), account linking refused
 * to an IdP identity that merely claims an existing e-mail, password sign-in switched off, and re-authentication
 * for an approval through the provider (prompt=login, max_age=0) — where a silent SSO round trip on an old IdP
 * session must not pass for a fresh sign-in.
 *
 * Two control planes of their own (global-setup's has no OIDC): `cp` with linking by e-mail on, the one
 * approvals run on (with a real agent and CPython target); `strict` with linking off and password sign-in off.
 */
import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { io, type Socket } from 'socket.io-client';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { freePort, startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { startIdp, type TestIdp } from '../support/oidc-idp';
import { startPython, type PyTarget } from '../support/python';
import { eventually, shot } from './helpers';

const SECRET = 'sso-client-secret-sso-client-secret';
const ROLE_MAP = { groups: { 'pyreach-admins': 'admin', 'pyreach-approvers': 'approver', sre: 'operator' } };

let idp: TestIdp;
let cp: ControlPlane;
let strict: ControlPlane;
let admin: ApiClient;
let target: PyTarget;
let agent: AgentProcess;
const contexts: BrowserContext[] = [];
const sockets: Socket[] = [];

test.describe.configure({ mode: 'serial' });

function oidcEnv(clientId: string, extra: Record<string, string>): Record<string, string> {
  return {
    NODE_ENV: 'production',
    PYREACH_UI: 'next',
    NEXT_TELEMETRY_DISABLED: '1',
    BETTER_AUTH_SECRET: 'e2e-sso-secret-e2e-sso-secret-e2e-sso',
    PYREACH_SEED_FORCE: '1',
    OIDC_ISSUER: idp.issuer,
    OIDC_CLIENT_ID: clientId,
    OIDC_CLIENT_SECRET: SECRET,
    OIDC_PROVIDER_NAME: 'Test IdP',
    PYREACH_OIDC_ROLE_MAP: JSON.stringify(ROLE_MAP),
    ...extra,
  };
}

test.beforeAll(async () => {
  const [idpPort, cpPort, strictPort] = [await freePort(), await freePort(), await freePort()];
  idp = await startIdp({
    port: idpPort,
    clients: [
      { clientId: 'pyreach', clientSecret: SECRET, baseUrl: `http://127.0.0.1:${cpPort}` },
      { clientId: 'pyreach-strict', clientSecret: SECRET, baseUrl: `http://127.0.0.1:${strictPort}` },
    ],
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
      // Claims the admin's e-mail and the IdP says it is verified: still no link where linking is off.
      eve: { email: USERS.admin, emailVerified: true, name: 'Eve', groups: ['pyreach-admins'] },
      // The viewer's own IdP identity, verified: joins the password account where linking is on.
      vic: { email: USERS.viewer, emailVerified: true, name: 'Vic', groups: [] },
    },
  });
  [cp, strict] = await Promise.all([
    startControlPlane('pglite', oidcEnv('pyreach', { PYREACH_OIDC_LINK_BY_EMAIL: 'on' }), { port: cpPort }),
    startControlPlane('pglite', oidcEnv('pyreach-strict', { PYREACH_PASSWORD_SIGNIN: 'off' }), {
      port: strictPort,
    }),
  ]);
  admin = await ApiClient.signIn(cp.baseUrl, USERS.admin);
  target = await startPython('log_service.py', { style: 'host' });
  const token = (
    await admin.ok(
      admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'sso' } }),
    )
  ).joinToken.token;
  agent = new AgentProcess({ config: { server: cp.baseUrl, policy: { allowRoot: true } } });
  const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=sso']);
  expect(enrolled.code, enrolled.stderr + enrolled.stdout).toBe(0);
  agent.start();
});

test.afterAll(async () => {
  for (const s of sockets) s.close();
  for (const c of contexts) await c.close();
  await agent?.kill('SIGKILL');
  await target?.kill();
  await Promise.all([cp?.cleanup(), strict?.cleanup()]);
  await idp?.close();
});

async function page(browser: Browser): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  return context.newPage();
}

/** At the IdP's login page: who signs in, and how long ago the IdP should say that happened. */
async function idpLogin(p: Page, who: string, agoSeconds = 0): Promise<void> {
  await expect(p.getByRole('heading', { name: 'Test IdP sign-in' })).toBeVisible();
  await p.getByLabel('Username').fill(who);
  await p.getByLabel('Signed in seconds ago').fill(String(agoSeconds));
  await p.getByRole('button', { name: 'Continue' }).click();
}

/** The sign-in page's provider button; `who` when the IdP is expected to ask (no IdP session yet). */
async function ssoSignIn(p: Page, base: string, who?: string, agoSeconds = 0): Promise<void> {
  await p.goto(`${base}/sign-in`);
  await p.getByRole('button', { name: 'Sign in with Test IdP', exact: true }).click();
  if (who) await idpLogin(p, who, agoSeconds);
}

async function signedInAs(p: Page, role: string): Promise<void> {
  await p.waitForURL((u) => u.origin === cp.baseUrl && !u.pathname.startsWith('/sign-in'));
  await expect(p.getByTestId('current-role')).toHaveText(role);
}

interface AuditEvent {
  action: string;
  actorType: string;
  actorName: string | null;
  subjectId: string | null;
  data: Record<string, unknown>;
}

async function roleChanges(email: string): Promise<AuditEvent[]> {
  const r = await admin.ok(admin.get<{ events: AuditEvent[] }>('/api/audit?action=user.role.set&limit=200'));
  return r.events.filter((e) => e.data.email === email);
}

function uiSocket(cookie: string): Promise<Socket> {
  const s = io(`${cp.baseUrl}/ui`, {
    transports: ['websocket'],
    extraHeaders: { cookie },
    reconnection: false,
  });
  sockets.push(s);
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

async function cookieHeader(p: Page): Promise<string> {
  return (await p.context().cookies(cp.baseUrl)).map((c) => `${c.name}=${c.value}`).join('; ');
}

test('the sign-in page offers the provider, and an SSO sign-in lands with the role its groups map to, audited as from the IdP', async ({
  browser,
}) => {
  const p = await page(browser);
  await p.goto(`${cp.baseUrl}/sign-in`);
  await expect(p.getByLabel('Password'), 'password sign-in stays on here').toBeVisible();
  await shot(p, 'sso-sign-in');
  await ssoSignIn(p, cp.baseUrl, 'sam');
  await signedInAs(p, 'operator');
  const [change] = await roleChanges('sam@idp.test');
  expect(change).toMatchObject({ actorType: 'system', actorName: 'idp:oidc' });
  expect(change?.data).toMatchObject({
    from: 'viewer',
    to: 'operator',
    source: 'idp',
    matched: ['groups=sre'],
  });
});

test('a group change at the IdP changes the role at the next sign-in, audited, and closes the sockets with the old role', async () => {
  const p = contexts.at(-1)!.pages()[0]!;
  const socket = await uiSocket(await cookieHeader(p));
  const closed = new Promise<string>((resolve) => socket.once('disconnect', resolve));
  idp.users.get('sam')!.groups = ['pyreach-approvers'];
  // The IdP session is still there: the provider answers without asking again.
  const logins = idp.logins.length;
  await ssoSignIn(p, cp.baseUrl);
  await signedInAs(p, 'approver');
  expect(idp.logins.length, 'no second login at the IdP').toBe(logins);
  expect(await closed).toBe('io server disconnect');
  const changes = await roleChanges('sam@idp.test');
  expect(changes.map((c) => [c.data.from, c.data.to, c.data.source])).toContainEqual([
    'operator',
    'approver',
    'idp',
  ]);
});

test("an IdP identity claiming the admin's e-mail without email_verified does not get the admin account", async ({
  browser,
}) => {
  const p = await page(browser);
  await ssoSignIn(p, cp.baseUrl, 'mallory');
  await p.waitForURL(
    (u) => u.pathname === '/sign-in' && u.searchParams.get('error') === 'account_not_linked',
  );
  await expect(p.getByText('is not linked to your SSO identity')).toBeVisible();
  const me = await p.request.get(`${cp.baseUrl}/api/me`);
  expect(me.status(), 'no session of any kind').toBe(401);
  const users = await admin.ok(admin.get<{ users: { email: string; role: string }[] }>('/api/users'));
  expect(users.users.filter((u) => u.email === USERS.admin)).toHaveLength(1);
  expect((await roleChanges(USERS.admin)).filter((e) => e.data.source === 'idp')).toHaveLength(0);

  // The control: where linking is on, a verified identity with its own e-mail joins that account.
  const v = await page(browser);
  await ssoSignIn(v, cp.baseUrl, 'vic');
  await signedInAs(v, 'viewer');
  const meV = (await (await v.request.get(`${cp.baseUrl}/api/me`)).json()) as {
    user: { email: string; name: string };
  };
  expect(meV.user).toMatchObject({ email: USERS.viewer, name: 'viewer' });
});

test('with linking off even a verified e-mail joins nothing, and password sign-in off hides the form and refuses the route', async ({
  browser,
}) => {
  const p = await page(browser);
  await p.goto(`${strict.baseUrl}/sign-in`);
  await expect(p.getByRole('button', { name: 'Sign in with Test IdP', exact: true })).toBeVisible();
  await expect(p.getByLabel('Password')).toHaveCount(0);
  const refused = await p.request.post(`${strict.baseUrl}/api/auth/sign-in/email`, {
    data: { email: USERS.admin, password: 'correct-horse-battery-staple' },
    headers: { origin: strict.baseUrl },
  });
  expect(refused.status()).toBe(403);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('PASSWORD_SIGNIN_DISABLED');

  await ssoSignIn(p, strict.baseUrl, 'eve');
  await p.waitForURL(
    (u) => u.pathname === '/sign-in' && u.searchParams.get('error') === 'account_not_linked',
  );
  expect((await p.request.get(`${strict.baseUrl}/api/me`)).status()).toBe(401);
});

test('a vote on a stale SSO sign-in goes back through the provider with prompt=login and max_age=0 and then counts; a silent round trip does not make it fresh', async ({
  browser,
}) => {
  const p = await page(browser);
  // The IdP session began an hour ago (the window is 10 minutes): this sign-in is not recent.
  await ssoSignIn(p, cp.baseUrl, 'ada', 3600);
  await signedInAs(p, 'approver');
  const operator = await ApiClient.signIn(cp.baseUrl, USERS.operator);
  const proc = await eventually('the target in the inventory', async () => {
    const r = await admin.ok(
      admin.get<{ processes: { pid: number; startTime: string; agentId: string }[] }>(
        '/api/fleet/processes?limit=10000',
      ),
    );
    return r.processes.find((x) => x.pid === target.pid);
  });
  const created = await operator.ok(
    operator.post<{ request: { id: string } }>('/api/requests', {
      kind: 'library',
      scriptId: 'interpreter.info',
      targets: {
        type: 'processes',
        processes: [{ agentId: proc.agentId, pid: proc.pid, startTime: proc.startTime }],
      },
      reason: 'E2E: SSO re-authentication before approving',
    }),
  );
  const vote = () =>
    p.request.post(`${cp.baseUrl}/api/requests/${created.request.id}/reviews`, {
      data: { decision: 'approve' },
      headers: { origin: cp.baseUrl },
    });
  const code = async () => ((await (await vote()).json()) as { error?: { code: string } }).error?.code;
  expect(await code()).toBe('STALE_AUTH');

  // The attacker's shortcut: a new sign-in without prompt=login rides the old IdP session (no login at the
  // IdP) — our session is new, but auth_time says the person was last checked an hour ago.
  const logins = idp.logins.length;
  await ssoSignIn(p, cp.baseUrl);
  await signedInAs(p, 'approver');
  expect(idp.logins.length).toBe(logins);
  expect(await code(), 'a silent SSO round trip is no re-authentication').toBe('STALE_AUTH');

  await p.goto(`${cp.baseUrl}/approvals`);
  const card = p.getByTestId('pending-request').filter({ hasText: 'E2E: SSO re-authentication' });
  await card.getByRole('button', { name: 'Approve' }).click();
  await p.getByRole('button', { name: 'Sign in again with Test IdP' }).click();
  // prompt=login: the IdP asks although its session is live.
  await idpLogin(p, 'ada');
  const asked = idp.authRequests.at(-1)!;
  expect(asked).toMatchObject({ prompt: 'login', max_age: '0', client_id: 'pyreach' });
  await p.waitForURL((u) => u.origin === cp.baseUrl && u.pathname === '/approvals');
  await expect(card).toHaveCount(0);
  const approved = await eventually('the request to be approved', async () => {
    const r = await admin.ok(
      admin.get<{ request: { state: string; reviews: { decision: string }[] } }>(
        `/api/requests/${created.request.id}`,
      ),
    );
    return r.request.state !== 'pending' && r.request;
  });
  expect(approved.reviews.map((r) => r.decision)).toEqual(['approve']);
});
