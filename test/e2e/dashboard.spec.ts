/**
 * The dashboard's acceptance story in a real browser, against the real server, the real agent
 * (apps/agent CLI: enroll + run) and a real CPython 3.14 target that logs only ERROR until someone lowers
 * its "main" logger to DEBUG.
 */
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test, type BrowserContext, type Page } from '@playwright/test';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { REPO_ROOT, SEED_PASSWORD, USERS } from '../support/control-plane';
import { startPython, type PyTarget } from '../support/python';
import { atEachSize, eventually, shot, SHOTS, signedIn } from './helpers';

const base = () => process.env.PYREACH_E2E_URL!;

let target: PyTarget;
let agent: AgentProcess;
let admin: ApiClient;
let operatorApi: ApiClient;
/** An approver signed in at the start; by the last test the sign-in is older than the 1-minute window. */
let staleApprover: { context: BrowserContext; page: Page; signedInAt: number };
let requestId = '';

test.describe.configure({ mode: 'serial' });

test.beforeAll(async ({ browser }) => {
  staleApprover = { ...(await signedIn(browser, USERS.approver2)), signedInAt: Date.now() };
  target = await startPython('log_service.py', { style: 'host' });
  admin = await ApiClient.signIn(base(), USERS.admin);
  operatorApi = await ApiClient.signIn(base(), USERS.operator);
  const token = (
    await admin.ok(
      admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'e2e' } }),
    )
  ).joinToken.token;
  agent = new AgentProcess({ config: { server: base(), policy: { allowRoot: true } } });
  const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=e2e']);
  expect(enrolled.code, enrolled.stderr + enrolled.stdout).toBe(0);
  agent.start();
  await eventually('the target in the inventory', async () => {
    const r = await admin.ok(admin.get<{ processes: { pid: number }[] }>('/api/fleet/processes?limit=10000'));
    return r.processes.some((p) => p.pid === target.pid);
  });
});

test.afterAll(async () => {
  await staleApprover?.context.close();
  await agent?.kill('SIGKILL');
  await target?.kill();
});

async function noDialogs(page: Page): Promise<string[]> {
  const fired: string[] = [];
  page.on('dialog', (d) => {
    fired.push(d.message());
    void d.dismiss();
  });
  return fired;
}

test('the fleet shows the enrolled host and its live Python process', async ({ browser }) => {
  const { context, page } = await signedIn(browser, USERS.viewer);
  await page.goto('/fleet');
  const row = page.getByTestId('process-row').filter({ hasText: String(target.pid) });
  await expect(row).toBeVisible();
  await expect(row).toContainText('3.14');
  await expect(row).toContainText('log_service.py');
  await expect(page.getByTestId('host-card').first()).toContainText('online');
  await page.getByLabel('Search hosts and processes').fill('no-such-process-xyz');
  await expect(page.getByText('Nothing matches these filters')).toBeVisible();
  await page.getByLabel('Search hosts and processes').fill('');
  await shot(page, 'fleet');
  await context.close();
});

test('an operator reads the live stacks of a process (no approval, nothing runs in it) and requests on its thread', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.operator);
  await page.goto('/fleet');
  await page
    .getByTestId('process-row')
    .filter({ hasText: String(target.pid) })
    .click();
  const drawer = page.getByTestId('process-drawer');
  await drawer.getByTestId('inspect-stacks').click();
  await expect(drawer.getByTestId('inspection-state')).toHaveText('read');
  const main = drawer.getByTestId('stack-thread').filter({ hasText: `tid ${target.pid}` });
  await expect(main).toContainText('main');
  // log_service.py sleeps in its loop at module level: innermost first, the module frame of the script.
  await expect(main.getByTestId('stack-frame').first()).toContainText('log_service.py');
  await expect(drawer.getByTestId('inspect-stacks')).toHaveText(/Refresh stacks/);
  await shot(page, 'fleet-stacks');
  await main.getByTestId('request-on-thread').click();
  await expect(page).toHaveURL(new RegExp(`/requests/new\\?targets=.*&tid=${target.pid}$`));
  await expect(page.getByTestId('thread-choice')).toContainText(`On thread ${target.pid}`);
  await context.close();
  const viewer = await signedIn(browser, USERS.viewer);
  await viewer.page.goto('/fleet');
  await viewer.page
    .getByTestId('process-row')
    .filter({ hasText: String(target.pid) })
    .click();
  await expect(viewer.page.getByTestId('drawer-facts')).toBeVisible();
  await expect(viewer.page.getByTestId('stacks-panel')).toHaveCount(0);
  await viewer.context.close();
});

test('a viewer cannot request: no form, and the API refuses', async ({ browser }) => {
  const { context, page } = await signedIn(browser, USERS.viewer);
  await expect(page.getByRole('link', { name: 'New request' })).toHaveCount(0);
  await page.goto('/requests/new');
  await expect(page.getByText('Your role cannot file requests')).toBeVisible();
  const res = await page.request.post('/api/requests', {
    data: {
      kind: 'library',
      scriptId: 'logging.set_level',
      params: { level: 'DEBUG' },
      targets: { type: 'selector', labels: {} },
      reason: 'viewer tries',
    },
    headers: { origin: base() },
  });
  expect(res.status()).toBe(403);
  await context.close();
});

test('operator requests logging.set_level; approver approves in another context; output is live; target logs DEBUG', async ({
  browser,
}) => {
  const op = await signedIn(browser, USERS.operator);
  const page = op.page;
  await page.goto('/requests/new');
  await page.getByLabel('Search processes').fill(String(target.pid));
  await page.getByRole('checkbox', { name: new RegExp(`, pid ${target.pid} on `) }).click();
  await page.getByLabel('Script', { exact: true }).selectOption('logging.set_level');
  await page.locator('#param-logger').fill('main');
  await page.locator('#param-level').selectOption('DEBUG');
  await page.getByLabel(/^Reason/).fill('E2E: main logger errors are opaque; DEBUG for context');
  await expect(page.getByTestId('policy-approvals')).toHaveText('1');
  await expect(page.getByTestId('policy-name')).toContainText('default');
  await shot(page, 'new-request');
  await page.getByRole('button', { name: 'File request' }).click();
  await page.waitForURL(/\/requests\/req_/);
  requestId = page.url().split('/').pop()!;
  await expect(page.getByTestId('request-state')).toHaveText('pending');
  // The requester has no approve button, and the API refuses anyway.
  await expect(page.getByRole('button', { name: 'Approve' })).toHaveCount(0);
  const self = await page.request.post(`/api/requests/${requestId}/reviews`, {
    data: { decision: 'approve' },
    headers: { origin: base() },
  });
  expect(self.status()).toBe(403);
  await page.goto('/approvals').catch(() => undefined);
  await page.goto(`/requests/${requestId}`);

  // The approver, in a second browser context.
  const ap = await signedIn(browser, USERS.approver);
  await ap.page.goto('/approvals');
  const card = ap.page.getByTestId('pending-request').filter({ hasText: 'E2E: main logger' });
  await expect(card).toBeVisible();
  await expect(card.getByTestId('request-params')).toContainText('"DEBUG"');
  await expect(card.getByTestId('requester')).toHaveText('operator');
  await shot(ap.page, 'approvals');
  await card.getByLabel('Comment').fill('read the code and params; go');
  await card.getByRole('button', { name: 'Approve' }).click();
  const reauth = ap.page.getByLabel('Password');
  if (await reauth.isVisible().catch(() => false)) {
    await reauth.fill((await import('../support/control-plane')).SEED_PASSWORD);
    await ap.page.getByRole('button', { name: 'Sign in and continue' }).click();
  }
  await expect(card).toHaveCount(0);

  // The operator's page updates without a reload: state, then output and result.
  const exec = page.getByTestId('execution');
  await expect(exec).toHaveAttribute('data-state', 'succeeded', { timeout: 90_000 });
  await expect(page.getByTestId('execution-result')).toContainText('DEBUG');
  await expect(page.getByTestId('request-state')).toHaveText(/succeeded|completed/);
  await expect(page.getByTestId('timeline')).toContainText('review.approve');
  await shot(page, 'request-detail');

  // The target's own log now has DEBUG lines.
  await target.waitForStdout(/DEBUG main context for request/, 30_000);

  // The change undoes itself (600 s by default): a countdown, and "Restore now" for the requester — part of what
  // was approved, so no new vote. The target restores at once and the follow-up says what it restored.
  const panel = page.getByTestId('restore-panel');
  await expect(panel.getByTestId('restore-countdown')).toContainText(/Restores itself in \d+ min/);
  await atEachSize(page, 'request-restore');
  // The target restores within milliseconds, so its push can overtake the answer to the click (seen on a loaded
  // CI machine): hold that answer back until the push has surely arrived. The page must not pin the older answer.
  let answered!: () => void;
  const heldBack = new Promise<void>((r) => (answered = r));
  await page.route('**/api/requests/*/restore', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const answer = await route.fetch();
    const body = await answer.body();
    await new Promise((r) => setTimeout(r, 2_000));
    await route.fulfill({ status: answer.status(), headers: answer.headers(), body });
    answered();
  });
  await panel.getByRole('button', { name: 'Restore now' }).click();
  const nowRun = panel.locator('[data-testid="restore-run"][data-mode="now"]');
  await expect(nowRun).toHaveAttribute('data-outcome', 'restored', { timeout: 60_000 });
  await heldBack;
  await page.waitForTimeout(500);
  await expect(nowRun, 'the late answer is not shown over the push').toHaveAttribute(
    'data-outcome',
    'restored',
  );
  await expect(panel.getByRole('button', { name: 'Restore now' })).toHaveCount(0);
  await expect(panel).toContainText('logger main: DEBUG → ERROR');
  const mark = target.stdout().length;
  await new Promise((r) => setTimeout(r, 1000));
  expect(target.stdout().slice(mark)).not.toMatch(/DEBUG main context/);
  await expect(page.getByTestId('timeline')).toContainText('request.restore_now');
  await op.context.close();
  await ap.context.close();
});

test('pre-flight at 1280×800 and 1920×1080: a target with remote debugging off is flagged doomed on the form and in the approvals queue', async ({
  browser,
}) => {
  // A second real target that opted out of remote debugging (PYTHON_DISABLE_REMOTE_DEBUG=1).
  const optedOut = await startPython('log_service.py', { style: 'host', disableRemoteDebug: true });
  let id = '';
  try {
    await eventually('the opted-out target in the inventory', async () => {
      const r = await admin.ok(
        admin.get<{ processes: { pid: number; remoteDebugEnabled: boolean | null }[] }>(
          '/api/fleet/processes?limit=10000',
        ),
      );
      return r.processes.some((p) => p.pid === optedOut.pid && p.remoteDebugEnabled === false);
    });
    // The operator's API sign-in in a fresh context (no second trip through the sign-in form).
    const [name, value] = operatorApi.cookie!.split(/=(.*)/s) as [string, string];
    const op = { context: await browser.newContext({ viewport: { width: 1280, height: 800 } }) };
    await op.context.addCookies([{ name, value, url: base() }]);
    const page = await op.context.newPage();
    await page.goto('/requests/new');
    await page.getByLabel('Script', { exact: true }).selectOption('interpreter.info');
    await page.getByLabel('Search processes').fill(String(optedOut.pid));
    await page.getByRole('checkbox', { name: new RegExp(`, pid ${optedOut.pid} on `) }).click();
    const panel = page.getByTestId('preflight-card');
    const doomedRow = panel.locator('[data-testid="preflight-target"][data-verdict="doomed"]');
    await expect(doomedRow).toContainText(`pid ${optedOut.pid}`);
    await expect(doomedRow).toContainText('log_service.py');
    await expect(doomedRow.locator('[data-code="REMOTE_DEBUG_DISABLED"]')).toBeVisible();
    await expect(panel.getByTestId('preflight-all-doomed')).toBeVisible();
    // Every target doomed: filing is refused (422 ALL_TARGETS_DOOMED), nothing is filed.
    await page.getByLabel(/^Reason/).fill('E2E: pre-flight, the opted-out target');
    await page.getByRole('button', { name: 'File request' }).click();
    await expect(page.getByText('The request was not filed')).toBeVisible();
    await expect(page.getByText(/every target would be refused before it runs/)).toBeVisible();
    // With the healthy target too it is filed, and the verdicts say which one is doomed.
    await page.getByLabel('Search processes').fill(String(target.pid));
    await page.getByRole('checkbox', { name: new RegExp(`, pid ${target.pid} on `) }).click();
    await expect(panel.getByTestId('preflight-all-doomed')).toHaveCount(0);
    await expect(panel.getByTestId('preflight-counts')).toContainText('1 doomed');
    await atEachSize(page, 'preflight-form');
    await page.getByRole('button', { name: 'File request' }).click();
    await page.waitForURL(/\/requests\/req_/);
    id = page.url().split('/').pop()!;
    await expect(page.getByTestId('preflight-card').getByTestId('preflight-counts')).toContainText(
      '1 doomed',
    );
    await op.context.close();

    // The approver signed in at the start (it only looks here: its sign-in ages on for the last test).
    const ap = staleApprover.page;
    await ap.setViewportSize({ width: 1280, height: 800 });
    await ap.goto('/approvals');
    const card = ap.locator(`[data-testid="pending-request"][data-request-id="${id}"]`);
    const flagged = card.locator('[data-testid="preflight-target"][data-verdict="doomed"]');
    await expect(flagged).toContainText(`pid ${optedOut.pid}`);
    await expect(flagged).toContainText('disabled remote debugging');
    await expect(card.locator('[data-testid="preflight-target"][data-verdict="doomed"]')).toHaveCount(1);
    await atEachSize(ap, 'preflight-approvals', card);
    await ap.setViewportSize({ width: 1366, height: 900 });
  } finally {
    if (id) await operatorApi.post(`/api/requests/${id}/cancel`, {}).catch(() => undefined);
    await optedOut.kill();
  }
});

test('output containing HTML or script is shown as text, never run', async ({ browser }) => {
  const payload = '<img src=x onerror="alert(1)"><script>alert(2)</script><b>bold?</b>';
  const p = (
    await admin.ok(
      admin.get<{ processes: { pid: number; startTime: string; agentId: string }[] }>(
        '/api/fleet/processes?limit=10000',
      ),
    )
  ).processes.find((x) => x.pid === target.pid)!;
  const created = await operatorApi.ok(
    operatorApi.post<{ request: { id: string } }>('/api/requests', {
      kind: 'custom',
      code: `print(${JSON.stringify(payload)})\nresult = {"html": ${JSON.stringify(payload)}}\n`,
      targets: { type: 'processes', processes: [{ agentId: p.agentId, pid: p.pid, startTime: p.startTime }] },
      reason: 'E2E: output escaping',
    }),
  );
  // Signed in just now: approving needs a sign-in within the (short) re-authentication window.
  const approverApi = await ApiClient.signIn(base(), USERS.approver);
  await approverApi.ok(
    approverApi.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve' }),
  );
  const { context, page } = await signedIn(browser, USERS.operator);
  const dialogs = await noDialogs(page);
  await page.goto(`/requests/${created.request.id}`);
  await expect(page.getByTestId('execution')).toHaveAttribute('data-state', 'succeeded', { timeout: 90_000 });
  await expect(page.getByTestId('execution-output')).toContainText(payload);
  await expect(
    page.locator(
      '[data-testid="execution-output"] img, [data-testid="execution-output"] script, [data-testid="execution-output"] b',
    ),
  ).toHaveCount(0);
  await page.waitForTimeout(500);
  expect(dialogs).toEqual([]);
  await shot(page, 'request-detail-escaped');
  await context.close();
});

test('results by state: 3 targets, one fails; output arrives as pushes (no refetch per chunk); grouped, filtered, retried, downloaded', async ({
  browser,
}, testInfo) => {
  // Two more targets beside the running one: one request, three targets, the third fails on purpose.
  const extra = [
    await startPython('log_service.py', { style: 'host' }),
    await startPython('log_service.py', { style: 'host' }),
  ];
  try {
    const pids = [target.pid, ...extra.map((t) => t.pid)];
    const procs = await eventually('the three targets in the inventory', async () => {
      const r = await admin.ok(
        admin.get<{ processes: { pid: number; startTime: string; agentId: string }[] }>(
          '/api/fleet/processes?limit=10000',
        ),
      );
      const found = pids.map((pid) => r.processes.find((x) => x.pid === pid));
      return found.every(Boolean) ? found.map((x) => x!) : null;
    });
    const failing = pids[2]!;
    const code = [
      'import os, time',
      'for i in range(3):',
      '    print(f"chunk {i}")',
      '    time.sleep(0.8)',
      // Past the request detail's preview (4 KiB): the page holds a preview, Expand reads the whole output.
      'print("=" * 6000 + " past the preview")',
      'time.sleep(2)',
      `if os.getpid() == ${failing}:`,
      '    raise RuntimeError("this target fails on purpose")',
      'print("all chunks out")',
    ].join('\n');
    const created = await operatorApi.ok(
      operatorApi.post<{ request: { id: string } }>('/api/requests', {
        kind: 'custom',
        code,
        targets: {
          type: 'processes',
          processes: procs.map((p) => ({ agentId: p.agentId, pid: p.pid, startTime: p.startTime })),
        },
        rollout: { concurrency: 3, maxFailures: 3 },
        reason: 'E2E: results by state',
      }),
    );
    const id = created.request.id;
    const { context, page } = await signedIn(browser, USERS.operator);
    await page.setViewportSize({ width: 1280, height: 800 });
    const reads: number[] = [];
    page.on('request', (r) => {
      if (r.method() === 'GET' && new URL(r.url()).pathname === `/api/requests/${id}`) reads.push(Date.now());
    });
    await page.goto(`/requests/${id}`);
    await expect(page.getByTestId('request-state')).toHaveText('pending');
    await page.waitForTimeout(500); // the first read and the room's join have settled
    const approverApi = await ApiClient.signIn(base(), USERS.approver);
    await approverApi.ok(approverApi.post(`/api/requests/${id}/reviews`, { decision: 'approve' }));

    // Chunks 0..2 of every target appear while they still run, without reading the request again.
    const outputs = page.getByTestId('execution-output');
    await expect(outputs.first()).toContainText('chunk 0', { timeout: 60_000 });
    // The reads the start asked for (approved, planned, executions unknown to the first read) end by chunk 1.
    for (let i = 0; i < 3; i++) await expect(outputs.nth(i)).toContainText('chunk 1', { timeout: 30_000 });
    const atFirstChunk = reads.length;
    for (let i = 0; i < 3; i++) await expect(outputs.nth(i)).toContainText('chunk 2', { timeout: 30_000 });
    expect(reads.length - atFirstChunk, 'no GET of the request per chunk').toBe(0);
    const running = await page.locator('[data-testid="execution-row"][data-state="picked_up"]').count();
    expect(running, 'still running when their last chunk arrived (so they were pushes)').toBeGreaterThan(0);

    // The ends: 2 succeeded, 1 failed; the two identical outputs grouped.
    await expect(page.getByTestId('request-state')).toHaveText('partially succeeded', { timeout: 60_000 });
    await expect(page.locator('[data-testid="outcome-group"][data-count="2"]')).toContainText(
      '2 targets: chunk 0',
    );
    // ~35 pushes (3 × sent, staged, picked up, 3 chunks and their updates, result; the request's own): the reads
    // are the first, the join, the start's (approved, planned, executions new to the page) and the ends, coalesced.
    expect(reads.length, 'far fewer reads than pushes').toBeLessThanOrEqual(10);
    await atEachSize(page, 'results-by-state');

    // A preview on the page; Expand reads the whole output from the download; the target named as the fleet does.
    const first = outputs.first();
    await expect(first.getByTestId('output-preview')).toBeVisible();
    await expect(first).not.toContainText('past the preview');
    await page.getByRole('button', { name: 'Expand output' }).first().click();
    await expect(first).toContainText('past the preview');
    await expect(first.getByTestId('output-preview')).toHaveCount(0);
    await expect(page.getByTestId('execution-process-name').first()).toContainText('log_service.py');

    // Filter by state: only the failed row.
    await page.locator('[data-testid="state-filter"][data-state="failed"]').click();
    await expect(page.getByTestId('execution-row')).toHaveCount(1);
    await expect(page.getByTestId('execution-row')).toContainText(String(failing));

    // The whole output as a file, authorised like the page.
    const href = await page.getByTestId('output-download').first().getAttribute('href');
    const file = await page.request.get(href!);
    expect(file.status()).toBe(200);
    expect(file.headers()['content-type']).toContain('text/plain');
    expect(file.headers()['content-disposition']).toMatch(/^attachment; filename="pyreach-.+\.txt"$/);
    expect(await file.text()).toContain('chunk 2');
    const anon = await (await import('@playwright/test')).request.newContext({ baseURL: base() });
    expect((await anon.get(href!)).status()).toBe(401);
    await anon.dispose();

    // Retry the failed ones: a new request, prefilled with the same code and only the failed target.
    await page.getByTestId('retry-failed').click();
    await page.waitForURL(/\/requests\/new\?retry=/);
    await expect(page.getByLabel(/^Reason/)).toHaveValue(
      new RegExp(`Retry of the failed targets of request ${id}`),
    );
    const picked = page.getByTestId('picked-target');
    await expect(picked).toHaveCount(1);
    await expect(picked).toContainText(`pid ${failing}`);
    await testInfo.attach('retry-failed-1280', {
      body: await page.screenshot({ fullPage: true }),
      contentType: 'image/png',
    });
    // Filed, it is a new request of its own, waiting for its own approval, on the failed target only.
    await page.getByRole('button', { name: 'File request' }).click();
    await page.waitForURL(/\/requests\/req_/);
    const retried = page.url().split('/').pop()!;
    expect(retried).not.toBe(id);
    await expect(page.getByTestId('request-state')).toHaveText('pending');
    const filed = await operatorApi.ok(
      operatorApi.get<{ request: { targets: { processes?: { pid: number }[] } } }>(
        `/api/requests/${retried}`,
      ),
    );
    expect(filed.request.targets.processes?.map((p) => p.pid)).toEqual([failing]);
    await context.close();
  } finally {
    for (const t of extra) await t.kill();
  }
});

test('the audit explorer shows the whole story, verifies the chain and exports the filtered set', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.approver);
  await page.goto(`/audit?subjectType=request&subjectId=${requestId}`);
  const actions = page.getByTestId('audit-row');
  await expect(actions.first()).toBeVisible();
  const seen = await actions.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-action')));
  for (const a of ['request.create', 'review.approve', 'request.dispatch']) expect(seen).toContain(a);
  await expect(page.getByTestId('chain-status')).toContainText('Chain verified');
  await shot(page, 'audit');
  const [jsonl] = await Promise.all([
    page.waitForEvent('download'),
    page.getByTestId('export-jsonl').click(),
  ]);
  const jsonlPath = path.join(SHOTS, '..', 'audit-export.jsonl');
  await jsonl.saveAs(jsonlPath);
  const all = readFileSync(jsonlPath, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { action?: string; subjectId?: string; checkpoint?: { seq: string } });
  // The export ends with the signed checkpoint it was taken at (verifiable offline); the events come before it.
  expect(all.at(-1)?.checkpoint).toBeTruthy();
  const lines = all.slice(0, -1);
  expect(lines.length).toBeGreaterThan(1);
  expect(lines.every((l) => l.subjectId === requestId)).toBe(true);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
  const csvPath = path.join(SHOTS, '..', 'audit-export.csv');
  await csv.saveAs(csvPath);
  expect(readFileSync(csvPath, 'utf8')).toContain('request.create');
  await context.close();
});

test('admin pages: users, agents with a copyable enrol command, policies, script library', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.admin);
  await page.goto('/admin?tab=users');
  await expect(page.getByRole('table', { name: 'Users' })).toContainText(USERS.viewer);
  await shot(page, 'admin-users');
  await page.goto('/admin?tab=agents');
  await page.getByLabel('Labels', { exact: true }).fill('env=staging');
  // A label no policy looks at: nothing loosens, so the declaration applies at once.
  await page.getByLabel('Namespace labels', { exact: true }).fill('payments: nsdecl=token');
  await page.getByRole('button', { name: 'Create join token' }).click();
  await expect(page.getByTestId('enroll-command')).toContainText(
    `pyreach-agent enroll --server ${base()} --token `,
  );
  await expect(page.getByTestId('join-token-row').first()).toContainText('ns/payments → nsdecl=token');
  // Per agent: its own declaration overrides its token's, shown in the agents table.
  await page
    .getByRole('button', { name: /^Namespace labels of / })
    .first()
    .click();
  await page.getByLabel('Follow its join token’s declaration').uncheck();
  await page
    .getByRole('dialog')
    .getByLabel('Namespace labels', { exact: true })
    .fill('sandbox: nsdecl=agent');
  await page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('dialog')).toBeHidden();
  await expect(page.getByRole('table', { name: 'Agents' })).toContainText('ns/sandbox → nsdecl=agent');
  await shot(page, 'admin-agents');
  await page.goto('/admin?tab=policies');
  await expect(page.getByRole('table', { name: 'Policies' })).toContainText('default');
  await shot(page, 'admin-policies');
  await page.goto('/scripts');
  await expect(page.getByRole('button', { name: /Set a logger/ })).toBeVisible();
  await shot(page, 'scripts');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto('/fleet');
  await expect(page.getByTestId('process-row').first()).toBeVisible();
  await shot(page, 'fleet-dark');
  await context.close();
  // Refresh the README's set only when asked (PYREACH_UPDATE_SCREENSHOTS=1), so a test run leaves the tree clean.
  if (process.env.PYREACH_UPDATE_SCREENSHOTS !== '1') return;
  // fleet, new-request and audit come from fleet-audit.spec.ts's 5,000-process world, at 1280×800.
  for (const n of ['fleet-dark', 'approvals', 'request-detail', 'admin-agents', 'scripts']) {
    try {
      copyFileSync(path.join(SHOTS, `${n}.png`), path.join(REPO_ROOT, 'docs/screenshots', `${n}.png`));
    } catch {
      /* a screenshot missing here means its test failed and reported it */
    }
  }
});

test('an approval after the re-authentication window asks for the password first, and only then counts', async () => {
  const p = (
    await admin.ok(
      admin.get<{ processes: { pid: number; startTime: string; agentId: string }[] }>(
        '/api/fleet/processes?limit=10000',
      ),
    )
  ).processes.find((x) => x.pid === target.pid)!;
  const created = await operatorApi.ok(
    operatorApi.post<{ request: { id: string } }>('/api/requests', {
      kind: 'library',
      scriptId: 'interpreter.info',
      targets: { type: 'processes', processes: [{ agentId: p.agentId, pid: p.pid, startTime: p.startTime }] },
      reason: 'E2E: re-authentication before approving',
    }),
  );
  // The window is one minute (global-setup); the approver signed in before every other test ran.
  const stale = 65_000 - (Date.now() - staleApprover.signedInAt);
  if (stale > 0) await staleApprover.page.waitForTimeout(stale);
  const page = staleApprover.page;
  await page.goto('/approvals');
  const card = page.getByTestId('pending-request').filter({ hasText: 'E2E: re-authentication' });
  await card.getByRole('button', { name: 'Approve' }).click();
  const password = page.getByLabel('Password');
  await expect(password).toBeVisible();
  await shot(page, 'reauth-prompt');
  const pending = await admin.ok(
    admin.get<{ request: { state: string; reviews: unknown[] } }>(`/api/requests/${created.request.id}`),
  );
  expect(pending.request.state, 'a stale sign-in casts no vote').toBe('pending');
  await password.fill(SEED_PASSWORD);
  await page.getByRole('button', { name: 'Sign in and continue' }).click();
  await expect(card).toHaveCount(0);
  await eventually('the request to be approved', async () => {
    const r = await admin.ok(
      admin.get<{ request: { state: string } }>(`/api/requests/${created.request.id}`),
    );
    return r.request.state !== 'pending' && r.request.state;
  });
});

test('break-glass: a granted operator runs an emergency without votes, marked everywhere; an approver reviews it afterwards', async ({
  browser,
}) => {
  const users = (await admin.ok(admin.get<{ users: { id: string; email: string }[] }>('/api/users'))).users;
  const opId = users.find((u) => u.email === USERS.operator)!.id;
  const { grant } = await admin.ok(
    admin.post<{ grant: { id: string } }>('/api/break-glass/grants', {
      userId: opId,
      reason: 'E2E: on call',
    }),
  );
  const op = await signedIn(browser, USERS.operator);
  const page = op.page;
  await page.goto('/requests/new');
  await page.getByLabel('Search processes').fill(String(target.pid));
  await page.getByRole('checkbox', { name: new RegExp(`, pid ${target.pid} on `) }).click();
  await page.getByLabel('Script', { exact: true }).selectOption('logging.set_level');
  await page.locator('#param-logger').fill('main');
  await page.locator('#param-level').selectOption('INFO');
  await page.getByLabel(/^Reason/).fill('E2E: break-glass, back to INFO');
  await page.getByLabel('Emergency (break-glass)').check();
  await expect(page.getByText('Runs at once, without approval')).toBeVisible();
  await page.getByLabel('What is on fire').fill('DEBUG logging is filling the disk right now');
  await page.getByRole('button', { name: 'Run now (break-glass)' }).click();
  await page.waitForURL(/\/requests\/req_/);
  const id = page.url().split('/').pop()!;
  await expect(page.getByTestId('break-glass-badge')).toBeVisible();
  await expect(page.getByTestId('after-review-state')).toHaveText('needs review afterwards');
  // Nobody voted: it ran on the break-glass grant alone.
  await expect(page.getByTestId('execution')).toHaveAttribute('data-state', 'succeeded', { timeout: 90_000 });
  await expect(page.getByTestId('timeline')).toContainText('request.break_glass');

  const ap = await signedIn(browser, USERS.approver);
  await ap.page.goto('/approvals');
  const item = ap.page.locator(`[data-testid="after-review-item"][data-request-id="${id}"]`);
  await expect(item.getByTestId('break-glass-badge')).toBeVisible();
  await item.getByLabel('What you checked').fill('E2E: output checked, disk is fine again');
  await item.getByRole('button', { name: 'Close review afterwards' }).click();
  await expect(item).toHaveCount(0);
  await page.reload();
  await expect(page.getByTestId('after-review-state')).toHaveText('reviewed afterwards');
  await admin.ok(admin.post(`/api/break-glass/grants/${grant.id}/revoke`, {}));
  await op.context.close();
  await ap.context.close();
});

test('service accounts: an admin creates one, mints a token shown once, the token works over HTTP until revoked', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.admin);
  const name = `e2e-bot-${Date.now().toString(36)}`;
  await page.goto('/admin?tab=service-accounts');
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Role', { exact: true }).selectOption('viewer');
  await page.getByRole('button', { name: 'Create service account' }).click();
  await expect(page.getByRole('table', { name: 'Service accounts' })).toContainText(name);
  const tokens = page.getByTestId('service-account-tokens');
  await expect(tokens).toContainText(`Tokens of ${name}`);
  await tokens.getByLabel('Valid (days)').fill('7');
  await tokens.getByLabel('Note').fill('e2e');
  await tokens.getByRole('button', { name: 'Mint token' }).click();
  const value = tokens.getByTestId('minted-token-value');
  await expect(value).toHaveText(/^pyr_[A-Za-z0-9_-]+_[A-Za-z0-9_-]{43}$/);
  const token = (await value.textContent())!;
  await tokens.getByRole('button', { name: 'Copy token' }).click();
  await expect(tokens.getByRole('button', { name: 'Copy token' })).toContainText('Copied');
  await shot(page, 'admin-service-accounts');

  const call = () =>
    fetch(`${base()}/api/requests?limit=1`, { headers: { authorization: `Bearer ${token}` } });
  const ok = await call();
  expect(ok.status).toBe(200);
  expect(((await ok.json()) as { ok: boolean }).ok).toBe(true);

  // Done: the clear token is gone from the page; the list shows its prefix only.
  await tokens.getByRole('button', { name: 'Done' }).click();
  await expect(tokens.getByTestId('minted-token-value')).toHaveCount(0);
  const tokenId = /^pyr_(.+)_[A-Za-z0-9_-]{43}$/.exec(token)![1]!;
  const row = tokens.getByTestId('api-token-row').filter({ hasText: `pyr_${tokenId}_…` });
  await expect(row).toContainText('active');
  await expect(row).toContainText('e2e');
  expect(await page.content()).not.toContain(token);
  await row.getByRole('button', { name: `Revoke token pyr_${tokenId}_…` }).click();
  await expect(row).toContainText('revoked');
  await expect(row, 'the call above shows as its last use').not.toContainText('never');

  const refused = await call();
  expect(refused.status).toBe(401);
  expect(refused.headers.get('content-type')).toContain('application/json');
  const body = (await refused.json()) as { ok: boolean; error: { code: string } };
  expect(body.ok).toBe(false);
  expect(body.error.code).toBe('TOKEN_REVOKED');
  await context.close();
});
