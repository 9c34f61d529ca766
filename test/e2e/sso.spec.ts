/**
 * Single sign-on in Chromium against a REAL OpenID Connect provider (node-oidc-provider): the sign-in page's
 * provider button, claims → roles (audited, sockets closed at a change), account linking refused to an IdP
 * identity that merely claims an existing e-mail, and re-authentication for an approval through the provider
 * (prompt=login, max_age=0) — where a silent SSO round trip on an old IdP session must not pass for a fresh
 * sign-in.
 *
 * The provider and the server are global-setup.ts's (OIDC, linking by e-mail on, password sign-in on): no
 * control plane of its own. What needs other settings and no browser — password sign-in off, linking off —
 * is in integration/sso.int.test.ts against an API-only server.
 */
import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { io, type Socket } from 'socket.io-client';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { USERS } from '../support/control-plane';
import { idpRemote } from '../support/oidc-idp';
import { startPython, type PyTarget } from '../support/python';
import { eventually, shot } from './helpers';

const BASE = process.env.PYREACH_E2E_URL!;
const idp = idpRemote(process.env.PYREACH_E2E_IDP_URL!);

let admin: ApiClient;
let target: PyTarget;
let agent: AgentProcess;
const contexts: BrowserContext[] = [];
const sockets: Socket[] = [];

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  admin = await ApiClient.signIn(BASE, USERS.admin);
  target = await startPython('log_service.py', { style: 'host' });
  const token = (
    await admin.ok(
      admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'sso' } }),
    )
  ).joinToken.token;
  agent = new AgentProcess({ config: { server: BASE, policy: { allowRoot: true } } });
  const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=sso']);
  expect(enrolled.code, enrolled.stderr + enrolled.stdout).toBe(0);
  agent.start();
});

test.afterAll(async () => {
  for (const s of sockets) s.close();
  for (const c of contexts) await c.close();
  await agent?.kill('SIGKILL');
  await target?.kill();
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
  await p.waitForURL((u) => u.origin === BASE && !u.pathname.startsWith('/sign-in'));
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
  const s = io(`${BASE}/ui`, {
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
  return (await p.context().cookies(BASE)).map((c) => `${c.name}=${c.value}`).join('; ');
}

test('the sign-in page offers the provider, and an SSO sign-in lands with the role its groups map to, audited as from the IdP', async ({
  browser,
}) => {
  const p = await page(browser);
  await p.goto(`${BASE}/sign-in`);
  await expect(p.getByLabel('Password'), 'password sign-in stays on here').toBeVisible();
  await shot(p, 'sso-sign-in');
  await ssoSignIn(p, BASE, 'sam');
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
  await idp.setUser('sam', { groups: ['pyreach-approvers'] });
  // The IdP session is still there: the provider answers without asking again.
  const logins = (await idp.log()).logins.length;
  await ssoSignIn(p, BASE);
  await signedInAs(p, 'approver');
  expect((await idp.log()).logins.length, 'no second login at the IdP').toBe(logins);
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
  await ssoSignIn(p, BASE, 'mallory');
  await p.waitForURL(
    (u) => u.pathname === '/sign-in' && u.searchParams.get('error') === 'account_not_linked',
  );
  await expect(p.getByText('is not linked to your SSO identity')).toBeVisible();
  const me = await p.request.get(`${BASE}/api/me`);
  expect(me.status(), 'no session of any kind').toBe(401);
  const users = await admin.ok(admin.get<{ users: { email: string; role: string }[] }>('/api/users'));
  expect(users.users.filter((u) => u.email === USERS.admin)).toHaveLength(1);
  expect((await roleChanges(USERS.admin)).filter((e) => e.data.source === 'idp')).toHaveLength(0);

  // The control: where linking is on, a verified identity with its own e-mail joins that account.
  const v = await page(browser);
  await ssoSignIn(v, BASE, 'vic');
  await signedInAs(v, 'viewer');
  const meV = (await (await v.request.get(`${BASE}/api/me`)).json()) as {
    user: { email: string; name: string };
  };
  expect(meV.user).toMatchObject({ email: USERS.viewer, name: 'viewer' });
});

test('a vote on a stale SSO sign-in goes back through the provider with prompt=login and max_age=0 and then counts; a silent round trip does not make it fresh', async ({
  browser,
}) => {
  const p = await page(browser);
  // The IdP session began an hour ago (the e2e window is 1 minute): this sign-in is not recent.
  await ssoSignIn(p, BASE, 'ada', 3600);
  await signedInAs(p, 'approver');
  const operator = await ApiClient.signIn(BASE, USERS.operator);
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
    p.request.post(`${BASE}/api/requests/${created.request.id}/reviews`, {
      data: { decision: 'approve' },
      headers: { origin: BASE },
    });
  const code = async () => ((await (await vote()).json()) as { error?: { code: string } }).error?.code;
  expect(await code()).toBe('STALE_AUTH');

  // The attacker's shortcut: a new sign-in without prompt=login rides the old IdP session (no login at the
  // IdP) — our session is new, but auth_time says the person was last checked an hour ago.
  const logins = (await idp.log()).logins.length;
  await ssoSignIn(p, BASE);
  await signedInAs(p, 'approver');
  expect((await idp.log()).logins.length).toBe(logins);
  expect(await code(), 'a silent SSO round trip is no re-authentication').toBe('STALE_AUTH');

  await p.goto(`${BASE}/approvals`);
  const card = p.getByTestId('pending-request').filter({ hasText: 'E2E: SSO re-authentication' });
  await card.getByRole('button', { name: 'Approve' }).click();
  await p.getByRole('button', { name: 'Sign in again with Test IdP' }).click();
  // prompt=login: the IdP asks although its session is live.
  await idpLogin(p, 'ada');
  const asked = (await idp.log()).authRequests.at(-1)!;
  expect(asked).toMatchObject({ prompt: 'login', max_age: '0', client_id: 'pyreach' });
  await p.waitForURL((u) => u.origin === BASE && u.pathname === '/approvals');
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
