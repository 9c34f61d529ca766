/**
 * The browser boundary and people (issue 11, items 5 and 6) played as the attacker, in Debian's Chromium
 * against the real server of global-setup.ts:
 *
 * - a page of ANOTHER ORIGIN OF THE SAME SITE (this file's own tiny server on 127.0.0.1, another port: the
 *   session cookie is SameSite=Lax, so Chromium does send it) auto-submits a text/plain form and a no-cors
 *   fetch to the vote route while an approver is signed in → refused, no vote; the same vote from the app's
 *   own page then counts (the cookie was live all along);
 * - `next=` spellings that browsers turn into another server → the approver lands on the app's own origin;
 * - that page frames the dashboard → Chromium refuses (frame-ancestors 'none'); every page carries a fresh
 *   nonce, runs its scripts with no CSP violation, and an injected event handler does not run;
 * - sign-out in another tab, and an admin disabling the user in the users tab, close the open dashboard's
 *   /ui socket at once; pushes that still reach others no longer reach it;
 * - an admin sets a temporary password (shown once); the user must change it before using anything; the old
 *   and temporary passwords fail afterwards.
 *
 * Its own people (created through the API) keep the sign-in throttle (5 a minute per address) of the seeded
 * users for the other spec files.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, test, type Browser, type BrowserContext, type Page, type WebSocket } from '@playwright/test';
import { ApiClient } from '../support/api';
import { USERS } from '../support/control-plane';
import { eventually, shot, signedIn } from './helpers';

const base = () => process.env.PYREACH_E2E_URL!;
const PASSWORD = 'attacker-spec-password-1';

/** One address per case, so no case spends another's sign-in budget. */
const PEOPLE = {
  redirect1: { email: 'redirect1@attacker.test', role: 'viewer' },
  redirect2: { email: 'redirect2@attacker.test', role: 'viewer' },
  csp: { email: 'csp@attacker.test', role: 'viewer' },
  signout: { email: 'signout@attacker.test', role: 'viewer' },
  watcher: { email: 'watcher@attacker.test', role: 'viewer' },
  suspect: { email: 'suspect@attacker.test', role: 'viewer' },
  temporary: { email: 'temporary@attacker.test', role: 'operator' },
} as const;
const ids: Partial<Record<keyof typeof PEOPLE, string>> = {};

/** The attacker's server: another origin of the same site as the app (same host, another port). */
let evil: Server;
let evilOrigin = '';
const evilPages = new Map<string, string>();

let admin: ApiClient;
let operator: ApiClient;

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  evil = createServer((req, res) => {
    const html = evilPages.get(new URL(req.url ?? '/', 'http://x').pathname);
    res.writeHead(html ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html ?? 'nothing here');
  });
  await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
  evilOrigin = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
  expect(evilOrigin).not.toBe(new URL(base()).origin);

  admin = await ApiClient.signIn(base(), USERS.admin);
  operator = await ApiClient.signIn(base(), USERS.operator);
  for (const [key, p] of Object.entries(PEOPLE)) {
    const made = await admin.ok(
      admin.post<{ user: { id: string } }>('/api/users', { ...p, name: key, password: PASSWORD }),
    );
    ids[key as keyof typeof PEOPLE] = made.user.id;
  }
});

test.afterAll(async () => {
  await new Promise((resolve) => evil?.close(resolve));
});

/** A pending request nobody could run (its selector matches no host): something to vote on or be told about. */
async function fileRequest(reason: string): Promise<string> {
  const r = await operator.ok(
    operator.post<{ request: { id: string } }>('/api/requests', {
      kind: 'library',
      scriptId: 'logging.set_level',
      params: { logger: 'main', level: 'DEBUG' },
      targets: { type: 'selector', labels: { env: 'attacker-spec-nowhere' } },
      reason,
    }),
  );
  return r.request.id;
}

async function reviewsOf(id: string) {
  const r = await admin.ok(
    admin.get<{ request: { state: string; approvals: number; reviews: unknown[] } }>(`/api/requests/${id}`),
  );
  return r.request;
}

/**
 * Every socket.io connection a page opens, what it received, and whether its /ui namespace is connected: a
 * `40/ui,{sid}` frame is the server's accept, `41/ui` its disconnect, `44/ui` a refused (re)connect. A server
 * closing the transport makes the client reconnect once; that new connection is refused at the handshake.
 */
function trackSockets(page: Page) {
  const sockets: { ws: WebSocket; frames: string[]; ui: boolean }[] = [];
  page.on('websocket', (ws) => {
    if (!ws.url().includes('/socket.io/')) return;
    const entry = { ws, frames: [] as string[], ui: false };
    ws.on('framereceived', (f) => {
      const text = String(f.payload);
      entry.frames.push(text);
      if (text.startsWith('40/ui,')) entry.ui = true;
      if (text.startsWith('41/ui') || text.startsWith('44/ui')) entry.ui = false;
    });
    ws.on('close', () => (entry.ui = false));
    sockets.push(entry);
  });
  // A new document: the sockets of the one before went with it (Chromium does not always say "close" for them).
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) for (const s of sockets) s.ui = false;
  });
  const frames = () => sockets.flatMap((s) => s.frames);
  return {
    sockets,
    /** Whether any of the page's sockets was told about this request. */
    heard: (requestId: string) =>
      frames().some((f) => f.includes('request:changed') && f.includes(requestId)),
    /** Connections whose /ui namespace the server has accepted and not closed. */
    live: () => sockets.filter((s) => s.ui).length,
  };
}

const liveIndicator = (page: Page) => page.getByTitle('Live updates connection').filter({ visible: true });

test('CSRF: a page of another origin of the same site posts a vote with the approver’s cookie → refused, no vote', async ({
  browser,
}) => {
  const id = await fileRequest('attacker spec: CSRF target');
  const voteUrl = `${base()}/api/requests/${id}/reviews`;
  // A text/plain form whose body is valid JSON for the vote route: {"decision":"approve","comment":"=ok"}.
  evilPages.set(
    '/form',
    `<!doctype html><form method="post" enctype="text/plain" action="${voteUrl}">
       <input type="hidden" name='{"decision":"approve","comment":"' value='ok"}'>
     </form><script>document.forms[0].submit()</script>`,
  );
  evilPages.set(
    '/fetch',
    `<!doctype html><script>
       fetch(${JSON.stringify(voteUrl)}, { method: 'POST', credentials: 'include', mode: 'no-cors',
         headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ decision: 'approve' }) })
         .then(() => { document.title = 'sent'; }, () => { document.title = 'failed'; });
     </script>`,
  );

  const { context, page } = await signedIn(browser, USERS.approver2);
  const attacker = await context.newPage();

  const formPost = attacker.waitForResponse((r) => r.url() === voteUrl && r.request().method() === 'POST');
  await attacker.goto(`${evilOrigin}/form`);
  const formAnswer = await formPost;
  // Chromium did attach the session cookie (same site, top-level POST): only the server's boundary stopped it.
  const formHeaders = await formAnswer.request().allHeaders();
  expect(formHeaders.cookie ?? '').toContain('session_token=');
  expect(formHeaders.origin).toBe(evilOrigin);
  expect(formAnswer.status()).toBe(403);
  expect(((await formAnswer.json()) as { error: { code: string } }).error.code).toBe('CROSS_ORIGIN');

  const fetchPost = attacker.waitForResponse((r) => r.url() === voteUrl && r.request().method() === 'POST');
  await attacker.goto(`${evilOrigin}/fetch`);
  const fetchAnswer = await fetchPost;
  expect(fetchAnswer.status()).toBe(403);
  await expect(attacker).toHaveTitle('sent');

  let r = await reviewsOf(id);
  expect(r.reviews).toHaveLength(0);
  expect(r.state).toBe('pending');

  // The control: the same cookie, from the app's own page, records the vote — the attack was real.
  const own = await page.evaluate(async (url) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ decision: 'approve', comment: 'from the dashboard itself' }),
    });
    return res.status;
  }, voteUrl);
  expect(own).toBe(200);
  r = await reviewsOf(id);
  expect(r.reviews).toHaveLength(1);
  expect(r.approvals).toBe(1);
  await context.close();
});

test('redirect: next= spellings that browsers turn into another server land on the app’s own origin', async ({
  browser,
}) => {
  const cases: [string, string][] = [
    ['/%5Cevil.example/x', PEOPLE.redirect1.email],
    ['/%09/evil.example', PEOPLE.redirect1.email],
    [encodeURIComponent('//evil.example/x'), PEOPLE.redirect1.email],
    [encodeURIComponent('https://evil.example/x'), PEOPLE.redirect2.email],
  ];
  const own = new URL(base()).origin;
  for (const [next, email] of cases) {
    const context = await browser.newContext();
    const left: string[] = [];
    // Never really leave: any navigation to the attacker's host is recorded and stopped.
    await context.route(
      (u) => u.hostname.endsWith('evil.example'),
      (route) => {
        left.push(route.request().url());
        return route.abort();
      },
    );
    const page = await context.newPage();
    await page.goto(`/sign-in?next=${next}`);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect
      .poll(() => left.length > 0 || !new URL(page.url()).pathname.startsWith('/sign-in'), {
        message: `signed in with next=${next}`,
      })
      .toBe(true);
    await expect(page.getByTestId('current-role')).toBeVisible();
    expect(left, `next=${next} went to another server`).toEqual([]);
    expect(new URL(page.url()).origin).toBe(own);
    // Where `/` leads: the app's home page, nowhere named by the attacker.
    expect(page.url()).not.toContain('evil');
    await context.close();
  }
  // The control: a path of the app is where the person goes.
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`/sign-in?next=${encodeURIComponent('/requests?state=pending')}`);
  await page.getByLabel('Email').fill(PEOPLE.redirect2.email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(`${own}/requests?state=pending`);
  await context.close();
});

/** A context that reports every CSP violation of any of its documents, and Chromium's own CSP console lines. */
async function cspWatchedContext(browser: Browser) {
  const context = await browser.newContext();
  const violations: string[] = [];
  await context.exposeFunction('__cspViolation', (v: string) => violations.push(v));
  // Page code, as text: this package compiles without the DOM library.
  await context.addInitScript({
    content: `document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolation(e.violatedDirective + ' ' + e.blockedURI + ' at ' + e.sourceFile + ':' + e.lineNumber));`,
  });
  const consoleLines: string[] = [];
  context.on('console', (m) => {
    if (/Content Security Policy|frame-ancestors/i.test(m.text())) consoleLines.push(m.text());
  });
  return { context, violations, consoleLines };
}

/**
 * The one CSP report still left on the pages, and not the app's code: the route table in @pyreach/protocol reaches
 * the job-envelope module, whose `node:crypto` import makes Next ship its crypto polyfill to the browser; the
 * polyfill's bundled `is-generator-function` probes `Function("return function*() {}")` inside a try/catch, which
 * the policy blocks (that is the CSP working, nothing breaks). Only a blocked eval from the chunk that holds that
 * probe is set aside, read from the chunk Chromium names; any other violation stays a failure.
 */
async function withoutPolyfillProbe(page: Page, violations: string[]): Promise<string[]> {
  const left: string[] = [];
  for (const v of violations) {
    const chunk = /^script-src eval at (\S+\/_next\/static\/chunks\/[\w-]+\.js):\d+$/.exec(v)?.[1];
    const text = chunk ? await (await page.request.get(chunk)).text() : '';
    if (!text.includes('Function("return function*() {}")')) left.push(v);
  }
  return left;
}

test('framing and CSP: another origin cannot frame the dashboard; pages run under a nonce policy with no violation', async ({
  browser,
}) => {
  const { context, violations, consoleLines } = await cspWatchedContext(browser);
  const page = await context.newPage();
  const signIn = await page.goto('/sign-in');
  await page.getByLabel('Email').fill(PEOPLE.csp.email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/sign-in'));

  const nonces = new Set<string>();
  const checkHeaders = (headers: Record<string, string>, path: string) => {
    const csp = headers['content-security-policy'] ?? '';
    expect(csp, path).toContain("frame-ancestors 'none'");
    expect(csp, path).toContain("object-src 'none'");
    expect(csp, path).not.toContain("'unsafe-inline' 'strict-dynamic'");
    expect(csp, path).not.toMatch(/script-src[^;]*'unsafe-(inline|eval)'/);
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce, `${path}: a nonce in script-src`).toBeTruthy();
    nonces.add(nonce!);
    expect(headers['x-content-type-options'], path).toBe('nosniff');
    expect(headers['referrer-policy'], path).toBe('same-origin');
  };
  checkHeaders(signIn!.headers(), '/sign-in');
  for (const path of ['/', '/fleet', '/requests', '/approvals', '/audit', '/scripts']) {
    const res = await page.goto(path);
    checkHeaders(res!.headers(), path);
    // Next's own scripts ran under the policy: the page hydrated and its live socket connected.
    await expect(liveIndicator(page), path).toHaveText('Live');
    await expect(page.getByTestId('current-role')).toBeVisible();
  }
  expect(nonces.size, 'a fresh nonce per page').toBe(7);
  const unexplained = await withoutPolyfillProbe(page, violations);
  expect(unexplained).toEqual([]);
  // Chromium logs each blocked eval too; those are the probes just explained.
  expect(consoleLines.filter((l) => !/evaluate a string as JavaScript/.test(l))).toEqual([]);
  expect(consoleLines.length).toBeLessThanOrEqual(violations.length);

  // An injected inline handler (what an HTML injection would try) does not run, and is reported.
  await page.evaluate(`(() => {
    const div = document.createElement('div');
    div.innerHTML = '<img src="data:," onerror="window.__injected = true">';
    document.body.append(div);
  })()`);
  await eventually('the injected handler reported', async () => violations.length > 0, 10_000);
  expect(violations.join('\n')).toMatch(/script-src/);
  expect(await page.evaluate('window.__injected')).toBeUndefined();

  // Another origin frames the signed-in dashboard: Chromium refuses to render it.
  violations.length = 0;
  consoleLines.length = 0;
  evilPages.set(
    '/frame',
    `<!doctype html><h1>win a prize</h1><iframe id="f" src="${base()}/approvals"></iframe>`,
  );
  const attacker = await context.newPage();
  const framed = attacker.waitForResponse((r) => r.url() === `${base()}/approvals`);
  await attacker.goto(`${evilOrigin}/frame`);
  const answer = await framed;
  expect(answer.headers()['content-security-policy']).toContain("frame-ancestors 'none'");
  await eventually(
    'Chromium refused the frame',
    async () => consoleLines.some((l) => /frame-ancestors/.test(l)),
    10_000,
  );
  const frame = attacker.frames().find((f) => f !== attacker.mainFrame());
  expect(frame, 'the iframe exists').toBeTruthy();
  await expect(frame!.getByTestId('current-role')).toHaveCount(0);
  await expect(frame!.getByText('Approvals')).toHaveCount(0);
  await shot(attacker, 'attacker-frame');
  await context.close();
});

test('sign-out in another tab closes the open dashboard’s /ui socket at once; no further pushes reach it', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, PEOPLE.signout.email, PASSWORD);
  const victim = trackSockets(page);
  await page.goto('/requests');
  await expect(liveIndicator(page)).toHaveText('Live');
  await eventually('the /ui socket accepted', async () => victim.live() === 1, 10_000);
  // Someone else's dashboard, still signed in: it proves the pushes keep flowing to others.
  const watcher = await signedIn(browser, PEOPLE.watcher.email, PASSWORD);
  const others = trackSockets(watcher.page);
  await watcher.page.goto('/requests');
  await expect(liveIndicator(watcher.page)).toHaveText('Live');

  const before = await fileRequest('attacker spec: pushed before sign-out');
  await eventually('the open dashboard hears the push', async () => victim.heard(before), 15_000);

  const other = await context.newPage();
  await other.goto('/');
  await other.getByRole('button', { name: 'Sign out' }).filter({ visible: true }).click();
  await other.waitForURL(/\/sign-in/);
  await eventually('the first tab’s socket closed by the server', async () => victim.live() === 0, 5_000);
  await expect(liveIndicator(page)).toHaveText('Offline');

  const after = await fileRequest('attacker spec: pushed after sign-out');
  await eventually('the other person still hears pushes', async () => others.heard(after), 15_000);
  expect(victim.heard(after)).toBe(false);
  expect(victim.live()).toBe(0);
  await context.close();
  await watcher.context.close();
});

let adminUi: { context: BrowserContext; page: Page };

test('an admin disables a user in the users tab: their socket closes at once, they cannot sign in until enabled', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, PEOPLE.suspect.email, PASSWORD);
  const victim = trackSockets(page);
  await page.goto('/requests');
  await expect(liveIndicator(page)).toHaveText('Live');
  await eventually('the /ui socket accepted', async () => victim.live() === 1, 10_000);

  adminUi = await signedIn(browser, USERS.admin);
  const others = trackSockets(adminUi.page);
  await adminUi.page.goto('/admin?tab=users');
  await expect(liveIndicator(adminUi.page)).toHaveText('Live');
  const email = PEOPLE.suspect.email;
  await adminUi.page.getByRole('button', { name: `Disable ${email}` }).click();
  await adminUi.page.getByLabel(`Why disable ${email}`).fill('attacker spec: account compromised');
  await adminUi.page.getByRole('button', { name: 'Confirm disable' }).click();
  const row = adminUi.page.getByRole('row').filter({ hasText: email });
  await expect(row).toContainText('disabled');
  await expect(row.getByRole('button', { name: `Enable ${email}` })).toBeVisible();
  await eventually('the disabled user’s socket closed by the server', async () => victim.live() === 0, 5_000);
  await expect(liveIndicator(page)).toHaveText('Offline');

  const after = await fileRequest('attacker spec: pushed after disabling');
  await eventually('the admin still hears pushes', async () => others.heard(after), 15_000);
  expect(victim.heard(after)).toBe(false);
  expect((await page.request.get('/api/requests')).status()).toBe(401);
  const refused = await new ApiClient(base()).signIn(email, PASSWORD);
  expect(refused.status).not.toBe(200);

  await row.getByRole('button', { name: `Enable ${email}` }).click();
  await expect(row.getByRole('button', { name: `Disable ${email}` })).toBeVisible();
  await expect(row).not.toContainText('disabled');
  expect((await new ApiClient(base()).signIn(email, PASSWORD)).status).toBe(200);
  const audit = await admin.ok(
    admin.get<{ events: { action: string }[] }>(`/api/audit?subjectId=${ids.suspect}&limit=50`),
  );
  expect(audit.events.map((e) => e.action)).toEqual(expect.arrayContaining(['user.disable', 'user.enable']));
  await context.close();
});

test('temporary password: shown once to the admin; the user must change it before anything else; old ones fail', async ({
  browser,
}) => {
  const email = PEOPLE.temporary.email;
  const earlier = await signedIn(browser, email, PASSWORD);
  await adminUi.page.goto('/admin?tab=users');
  await adminUi.page.getByRole('button', { name: `Set a temporary password for ${email}` }).click();
  const shown = adminUi.page.getByTestId('temporary-password');
  await expect(shown).toContainText(email);
  const temporary = (await shown.getByTestId('temporary-password-value').textContent())!.trim();
  expect(temporary.length).toBeGreaterThanOrEqual(12);
  await shot(adminUi.page, 'temporary-password');
  // Shown once: gone after a reload, and never in the audit record.
  await adminUi.page.reload();
  await expect(adminUi.page.getByTestId('temporary-password')).toHaveCount(0);
  // The session the user had is over.
  expect((await earlier.page.request.get('/api/requests')).status()).toBe(401);
  await earlier.context.close();

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto('/sign-in');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expect(page.getByText('Email or password is wrong.')).toBeVisible();
  await page.getByLabel('Password').fill(temporary);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(/\/change-password$/);
  await expect(page.getByText('Choose a new password')).toBeVisible();
  // Nothing of the app until it is changed: pages send the person back, the API refuses.
  await page.goto('/requests/new');
  await expect(page).toHaveURL(/\/change-password$/);
  const blocked = await page.request.get('/api/requests');
  expect(blocked.status()).toBe(403);
  expect(((await blocked.json()) as { error: { code: string } }).error.code).toBe('PASSWORD_CHANGE_REQUIRED');

  const chosen = 'my-own-new-password-42';
  await page.getByLabel('Temporary password').fill(temporary);
  await page.getByLabel('New password', { exact: true }).fill(chosen);
  await page.getByLabel('New password again').fill(chosen);
  await page.getByRole('button', { name: 'Set new password' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/change-password'));
  await expect(page.getByTestId('current-role')).toBeVisible();
  expect((await page.request.get('/api/requests')).status()).toBe(200);
  await context.close();

  expect((await new ApiClient(base()).signIn(email, temporary)).status).not.toBe(200);
  expect((await new ApiClient(base()).signIn(email, chosen)).status).toBe(200);
  const audit = await admin.ok(
    admin.get<{ events: { action: string; data: unknown }[] }>(
      `/api/audit?subjectId=${ids.temporary}&limit=50`,
    ),
  );
  const actions = audit.events.map((e) => e.action);
  expect(actions).toEqual(expect.arrayContaining(['user.password.temporary', 'user.password.changed']));
  expect(JSON.stringify(audit.events)).not.toContain(temporary);
  await adminUi.context.close();
});
