/**
 * Issue 16 items 1, 5 and 6 in Chromium at 1280×800 and 1920×1080, against the real server: a fleet of 5,000
 * processes reported by real socket.io test agents (paged, filtered on the server, a detail drawer, no
 * horizontal overflow), the audit explorer (an event opens whole, names not ids, actor by name, exports equal
 * to the screen), the new-request form's target picker (searched and paged on the server, keyboard-usable,
 * choices kept across searches), and the small fixes (favicon, plurals, Reject needs a comment, unambiguous
 * revoke dialog). PYREACH_UPDATE_SCREENSHOTS=1 refreshes the README's fleet, new-request and audit pictures.
 */
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test, type Page } from '@playwright/test';
import type { PythonProcess } from '@pyreach/protocol/inventory';
import { ApiClient } from '../support/api';
import { REPO_ROOT, USERS } from '../support/control-plane';
import { enroll, fakeProcess, TestAgent } from '../support/test-agent';
import { noHorizontalOverflow, shot, SHOTS, signedIn, VIEWPORTS } from './helpers';

const base = () => process.env.PYREACH_E2E_URL!;
const PY = '/root/.cache/pyreach/cpython-3.14/root/usr/bin/python3.14-host';
const DEMO_CMD = [PY, '-u', '/work/pyreach/demo/service.py', '--port', '8080', '--log-level', 'error'];

let admin: ApiClient;
let operatorApi: ApiClient;
const agents: TestAgent[] = [];
let demoAgentId = '';

test.describe.configure({ mode: 'serial' });

async function agentWith(hostname: string, labels: Record<string, string>, processes: PythonProcess[]) {
  const { joinToken } = await admin.ok(
    admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels }),
  );
  const enrolled = await enroll(base(), joinToken.token, { hostname, labels });
  const ta = await TestAgent.connect(enrolled);
  agents.push(ta);
  const ack = await ta.snapshot(processes, labels, hostname);
  expect(ack.ok, JSON.stringify(ack)).toBe(true);
  return enrolled.agentId;
}

test.beforeAll(async () => {
  test.setTimeout(300_000);
  admin = await ApiClient.signIn(base(), USERS.admin);
  operatorApi = await ApiClient.signIn(base(), USERS.operator);
  demoAgentId = await agentWith('demo-vm', { env: 'demo', team: 'payments-platform-observability' }, [
    fakeProcess(4242, {
      cmdline: DEMO_CMD,
      exe: PY,
      user: 'svc-demo',
      threads: [
        { tid: 4242, main: true },
        { tid: 4243, main: false },
        { tid: 4244, main: false },
      ],
    }),
    fakeProcess(4300, {
      cmdline: ['python3.14', '-m', 'celery', 'worker', '--concurrency', '4'],
      inContainer: true,
      container: 'docker:9f2c1ab3e4d5',
      nsPid: 1,
    }),
  ]);
  // A Kubernetes node whose agent watches pods (issue 14): three pods in two namespaces and a host process.
  await agentWith('k8s-node-e2e', { env: 'k8s-e2e' }, [
    podProcess(7001, 'shop-e2e', 'checkout-7d9f-aaaaa', 'web', { app: 'checkout-e2e', track: 'stable' }),
    podProcess(7002, 'shop-e2e', 'checkout-7d9f-bbbbb', 'web', { app: 'checkout-e2e', track: 'canary' }),
    podProcess(7003, 'ledger-e2e', 'ledger-0', 'ledger', { app: 'ledger-e2e' }, 'StatefulSet', 'ledger'),
    fakeProcess(7004, { cmdline: [PY, '/srv/node/exporter.py'] }),
  ]);
  // 5,000 more processes on 10 hosts (500 each: one inventory snapshot per agent).
  for (let h = 0; h < 10; h++) {
    await agentWith(
      `fleet-${String(h).padStart(2, '0')}`,
      { env: h % 2 ? 'prod' : 'staging' },
      Array.from({ length: 500 }, (_, i) =>
        fakeProcess(10_000 + i, {
          cmdline: [PY, `/srv/svc/worker-${h * 500 + i}.py`, '--queue', `q${i % 7}`],
          remoteDebugEnabled: i % 50 === 3 ? false : true,
        }),
      ),
    );
  }
  // Two agents with the same name (the revoke dialog must tell them apart).
  await agentWith('twin-vm', { env: 'twin' }, []);
  await agentWith('twin-vm', { env: 'twin' }, []);
});

/** A process in a pod, with the container identity an agent that can watch pods reports. */
function podProcess(
  pid: number,
  namespace: string,
  name: string,
  containerName: string,
  labels: Record<string, string>,
  kind = 'Deployment',
  workload = 'checkout',
): PythonProcess {
  const uid = `00000000-0000-4000-8000-${String(pid).padStart(12, '0')}`;
  return fakeProcess(pid, {
    cmdline: [PY, `/app/${containerName}.py`],
    inContainer: true,
    container: `containerd:${pid.toString(16).padStart(12, '0')}`,
    containerIdentity: {
      cgroup: 'v2',
      runtime: 'containerd',
      containerId: pid.toString(16).padStart(64, '0'),
      podUid: uid,
      pod: {
        name,
        namespace,
        uid,
        nodeName: 'k8s-node-e2e',
        containerName,
        labels,
        workload: { kind, name: workload },
      },
    },
  });
}

test.afterAll(() => {
  for (const a of agents) a.close();
});

/**
 * One of the README's pictures (docs/screenshots), at the window's size; copied there only when
 * PYREACH_UPDATE_SCREENSHOTS=1, so a test run leaves the tree clean.
 */
async function readmeShot(page: Page, name: 'fleet' | 'new-request' | 'audit') {
  await shot(page, `readme-${name}`, { fullPage: false });
  if (process.env.PYREACH_UPDATE_SCREENSHOTS === '1')
    copyFileSync(
      path.join(SHOTS, `readme-${name}.png`),
      path.join(REPO_ROOT, 'docs/screenshots', `${name}.png`),
    );
}

test('the fleet leads with the script, pages 5,000 processes, filters on the server and opens a drawer', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.operator);
  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    await page.goto('/fleet');
    // The first page load on two shared cores can take a while; later steps are server round trips.
    await expect(page.getByTestId('fleet-totals')).toContainText('Python processes', { timeout: 90_000 });
    await expect(page.getByTestId('fleet-totals')).toContainText(/\d+ hosts · /);
    await expect(page.getByTestId('fleet-range')).toContainText(/1–100 of [\d,]+ processes/);
    expect(await page.getByTestId('process-row').count()).toBe(100);
    if (vp.width === 1280) await readmeShot(page, 'fleet');

    const search = page.getByLabel('Search hosts and processes');
    // Every word must match (host, script, user, container): the host narrows it to this spec's service, not
    // the real demo service another spec's agent reports.
    await search.fill('demo-vm service.py');
    await expect(page.getByTestId('fleet-range')).toContainText('1–1 of 1 process matching');
    const row = page.getByTestId('process-row');
    await expect(row.getByTestId('process-name')).toHaveText('demo/service.py');
    const cmd = row.getByTestId('process-cmdline');
    await expect(cmd).toHaveAttribute('title', DEMO_CMD.join(' '));
    const shown = (await cmd.textContent()) ?? '';
    expect(shown, 'cut in the middle: both ends kept').toContain('…');
    expect(shown.endsWith('--log-level error')).toBe(true);
    await noHorizontalOverflow(page, `fleet ${vp.width}`);
    await shot(page, `fleet-search-${vp.width}x${vp.height}`);

    await row.click();
    const drawer = page.getByTestId('process-drawer');
    await expect(drawer.getByTestId('drawer-cmdline')).toHaveText(DEMO_CMD.join(' '));
    await expect(drawer.getByTestId('drawer-facts')).toContainText('svc-demo');
    await expect(drawer.getByTestId('drawer-facts')).toContainText('none (host process)');
    await expect(drawer.getByTestId('drawer-threads').getByRole('listitem')).toHaveCount(3);
    await expect(drawer.getByTestId('drawer-threads')).toContainText('tid 4242 · main');
    await expect(drawer).toContainText('Recent requests on this process');
    await noHorizontalOverflow(page, `fleet drawer ${vp.width}`);
    await shot(page, `fleet-drawer-${vp.width}x${vp.height}`);
    await page.keyboard.press('Escape');
    await expect(drawer).toBeHidden();

    await search.fill('celery');
    await expect(page.getByTestId('process-name')).toHaveText('celery');
    await expect(page.getByTestId('process-row')).toContainText('container docker:9f2c1ab3e4d5');

    await search.fill('');
    await page.getByLabel('Remote debugging').selectOption('off');
    await expect(page.getByTestId('fleet-range')).toContainText('1–100 of 100 processes matching');
    await page.getByLabel('Label').selectOption('env=prod');
    await expect(page.getByTestId('fleet-range')).toContainText('of 50 processes matching');
    await page.getByLabel('Remote debugging').selectOption('any');
    await page.getByLabel('Label').selectOption('');
    await page.getByRole('button', { name: 'Next' }).click();
    await expect(page.getByTestId('fleet-range')).toContainText(/101–200 of/);
    await noHorizontalOverflow(page, `fleet page 2 ${vp.width}`);
    await shot(page, `fleet-${vp.width}x${vp.height}`);
  }
  await context.close();
});

test('the fleet API answers 400 naming the field for a bad filter', async () => {
  const r = await operatorApi.request('GET', '/api/ui/fleet?debug=maybe');
  expect(r.status).toBe(400);
  expect(JSON.stringify(r.body)).toContain('debug');
});

test('the new-request form finds one of 5,000 processes on the server, by keyboard too, and keeps what is chosen', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.operator);
  await page.setViewportSize(VIEWPORTS[0]);
  await page.goto('/requests/new');
  const range = page.getByTestId('picker-range');
  // One page of the fleet's own query, never the whole fleet.
  await expect(range).toContainText(/^1–25 of [\d,]+ processes$/, { timeout: 90_000 });
  expect(await page.getByTestId('picker-row').count()).toBe(25);

  const search = page.getByLabel('Search processes');
  await search.fill('demo-vm service.py');
  await expect(range).toHaveText('1–1 of 1 process matching');
  const row = page.getByTestId('picker-row');
  await expect(row.getByTestId('picker-name')).toHaveText('demo/service.py');
  const cmd = row.getByTestId('picker-cmdline');
  await expect(cmd).toHaveAttribute('title', DEMO_CMD.join(' '));
  const cut = (await cmd.textContent()) ?? '';
  expect(cut, 'cut in the middle: both ends kept').toContain('…');
  expect(cut.endsWith('--log-level error')).toBe(true);
  await expect(row).toContainText('svc-demo');
  // Enter picks the only match and does not file the form.
  await search.press('Enter');
  const picked = page.getByTestId('picked-target');
  await expect(picked).toHaveCount(1);
  await expect(picked).toContainText('demo/service.py · demo-vm · pid 4242 · svc-demo');
  expect(new URL(page.url()).pathname).toBe('/requests/new');

  // Far down the fleet (host 9 of 10), by keyboard: ↓ to the result, Space to pick it.
  await search.fill('worker-4217.py');
  // The range reads as it did for the last search: wait for this search's row.
  await expect(page.getByTestId('picker-name')).toHaveText('svc/worker-4217.py');
  await search.press('ArrowDown');
  await expect(
    page.getByRole('checkbox', { name: 'Target svc/worker-4217.py, pid 10217 on fleet-08' }),
  ).toBeFocused();
  await page.keyboard.press('Space');
  await expect(picked).toHaveCount(2);
  // The search moves on to a page of 111: both choices stay listed, and one can be dropped.
  await search.fill('worker-42');
  await expect(range).toHaveText('1–25 of 111 processes matching');
  await expect(picked).toHaveCount(2);
  await expect(picked.nth(1)).toContainText('svc/worker-4217.py · fleet-08 · pid 10217');
  await picked
    .nth(1)
    .getByRole('button', { name: /^Remove svc\/worker-4217\.py/ })
    .click();
  await expect(picked).toHaveCount(1);
  await expect(page.getByTestId('picked-count')).toHaveText('1 selected');

  await page.getByLabel('Script', { exact: true }).selectOption('interpreter.info');
  await page.getByLabel(/^Reason/).fill('E2E: one process of 5,000, found by name');
  // A page of results beside the choice, at both sizes: nothing wider than the window.
  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    await noHorizontalOverflow(page, `new request ${vp.width}`);
    await shot(page, `new-request-picker-${vp.width}x${vp.height}`);
  }
  await page.setViewportSize(VIEWPORTS[0]);
  await page.evaluate('window.scrollTo(0, 0)');
  await readmeShot(page, 'new-request');
  await page.getByRole('button', { name: 'File request' }).click();
  await page.waitForURL(/\/requests\/req_/);
  const id = new URL(page.url()).pathname.split('/').at(-1)!;
  const filed = await operatorApi.ok(
    operatorApi.get<{
      request: { targets: { type: string; processes: { agentId: string; pid: number }[] } };
    }>(`/api/requests/${id}`),
  );
  expect(filed.request.targets.processes.map((p) => [p.agentId, p.pid])).toEqual([[demoAgentId, 4242]]);
  await context.close();
});

test('pods: the fleet filters by namespace and workload; a selector by pod label previews and files', async ({
  browser,
}) => {
  // Through the API: a pod-label selector resolves to exactly the pods; malformed pod terms are 400 naming the field.
  const preview = await operatorApi.ok(
    operatorApi.post<{ count: number; processes: { pid: number; pod?: { name: string } | null }[] }>(
      '/api/fleet/preview',
      { labels: {}, process: { pod: { namespace: 'shop-e2e', labels: { app: 'checkout-e2e' } } } },
    ),
  );
  expect(preview.processes.map((p) => [p.pid, p.pod?.name])).toEqual([
    [7001, 'checkout-7d9f-aaaaa'],
    [7002, 'checkout-7d9f-bbbbb'],
  ]);
  const badNs = await operatorApi.request('POST', '/api/fleet/preview', {
    labels: {},
    process: { pod: { namespace: 'Shop_E2E' } },
  });
  expect(badNs.status).toBe(400);
  expect(JSON.stringify(badNs.body)).toContain('body.process.pod.namespace');
  const badLabel = await operatorApi.request('POST', '/api/requests', {
    kind: 'library',
    scriptId: 'interpreter.info',
    targets: { type: 'selector', labels: {}, process: { pod: { labels: { app: 'no spaces allowed' } } } },
    reason: 'E2E: a malformed pod label',
  });
  expect(badLabel.status).toBe(400);
  expect(JSON.stringify(badLabel.body)).toContain('body.targets.process.pod.labels');
  const badWorkload = await operatorApi.request('GET', '/api/ui/fleet?workload=not%20a%20workload');
  expect(badWorkload.status).toBe(400);
  expect(JSON.stringify(badWorkload.body)).toContain('workload');

  const { context, page } = await signedIn(browser, USERS.operator);
  await page.setViewportSize(VIEWPORTS[0]);
  await page.goto('/fleet');
  await expect(page.getByTestId('fleet-totals')).toContainText('Python processes', { timeout: 90_000 });
  await page.getByLabel('Namespace').selectOption('shop-e2e');
  await expect(page.getByTestId('fleet-range')).toContainText('1–2 of 2 processes matching');
  await expect(page.getByTestId('process-pod').first()).toHaveText(
    'pod shop-e2e/checkout-7d9f-aaaaa · web · Deployment/checkout',
  );
  await page.getByLabel('Namespace').selectOption('');
  await page.getByLabel('Workload').selectOption('ledger-e2e/StatefulSet/ledger');
  await expect(page.getByTestId('fleet-range')).toContainText('1–1 of 1 process matching');
  await expect(page.getByTestId('process-pod')).toHaveText(
    'pod ledger-e2e/ledger-0 · ledger · StatefulSet/ledger',
  );
  await page.getByTestId('process-row').click();
  await expect(page.getByTestId('drawer-workload')).toHaveText('StatefulSet/ledger');
  await page.keyboard.press('Escape');
  await noHorizontalOverflow(page, 'fleet by workload');
  await shot(page, 'fleet-by-workload');

  await page.goto('/requests/new');
  await page.getByRole('tab', { name: 'Selector' }).click();
  await page.getByLabel('Pod labels').fill('app=checkout e2e');
  await expect(page.getByTestId('pod-error')).toContainText('Pod labels');
  await page.getByLabel('Pod labels').fill('app=checkout-e2e, track=canary');
  const shown = page.getByTestId('selector-preview');
  await expect(shown.getByTestId('selector-count')).toHaveText('1');
  await expect(shown.getByTestId('preview-pod')).toHaveText('shop-e2e/checkout-7d9f-bbbbb · web');
  await page.getByLabel('Pod labels').fill('app=checkout-e2e');
  await page.getByLabel('Namespace').fill('shop-e2e');
  await expect(shown.getByTestId('selector-count')).toHaveText('2');
  await page.getByLabel('Script', { exact: true }).selectOption('interpreter.info');
  await page.getByLabel(/^Reason/).fill('E2E: the checkout pods, by pod label');
  await shot(page, 'new-request-pod-selector');
  await page.getByRole('button', { name: 'File request' }).click();
  await page.waitForURL(/\/requests\/req_/);
  await expect(page.locator('main')).toContainText('pod: namespace shop-e2e, pod labels app=checkout-e2e');
  await context.close();
});

test('audit events open whole, show names, filter by actor name, and export exactly what is shown', async ({
  browser,
}) => {
  for (let i = 0; i < 5; i++)
    await admin.ok(admin.post('/api/join-tokens', { labels: {}, note: `zebracorn rotation ${i}` }));
  const { context, page } = await signedIn(browser, USERS.admin);
  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    await page.goto('/audit');
    await page.getByLabel('Text').fill('zebracorn');
    await page.getByLabel('Actor').fill('ADMIN');
    // The action too: each export is itself audited, with these very filters in its data.
    await page.getByLabel('Action').fill('agent.join_token.create');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect(page.getByTestId('audit-row')).toHaveCount(5);
    await expect(page.getByTestId('audit-row').first()).toContainText(/zebracorn rotation \d/);
    await expect(page.getByTestId('audit-row').first()).not.toContainText('join_token:');

    for (const format of ['jsonl', 'csv'] as const) {
      const href = await page.getByTestId(`export-${format}`).getAttribute('href');
      expect(href).toContain('text=zebracorn');
      const res = await page.request.get(href!);
      expect(res.status()).toBe(200);
      const lines = (await res.text()).trim().split('\n');
      // CSV: a header and the five rows; JSON Lines: the five events and the signed checkpoint they end at.
      expect(lines.length, `${format} export = the rows on screen`).toBe(6);
      if (format === 'jsonl') expect(JSON.parse(lines.at(-1)!)).toHaveProperty('checkpoint');
    }

    await page.getByTestId('open-event').first().click();
    const dialog = page.getByTestId('event-dialog');
    await expect(dialog).toContainText('agent.join_token.create');
    await expect(dialog.getByTestId('event-data')).toContainText('"note": "zebracorn rotation');
    await expect(dialog).toContainText('admin');
    await noHorizontalOverflow(page, `audit ${vp.width}`);
    await shot(page, `audit-event-${vp.width}x${vp.height}`);
    await page.keyboard.press('Escape');
    await noHorizontalOverflow(page, `audit ${vp.width}`);
    await shot(page, `audit-${vp.width}x${vp.height}`);
    if (vp.width === 1280) await readmeShot(page, 'audit');
  }
  await context.close();
});

test('favicon, plurals, a revoke dialog that names the agent, and Reject that needs a comment', async ({
  browser,
}) => {
  const { context, page } = await signedIn(browser, USERS.admin);
  const icon = await page.request.get('/icon.svg');
  expect(icon.status()).toBe(200);
  expect(icon.headers()['content-type']).toContain('image/svg+xml');
  const favicon404s: string[] = [];
  page.on('response', (r) => {
    if (/favicon|icon/.test(r.url()) && r.status() >= 400) favicon404s.push(r.url());
  });

  await page.goto('/fleet');
  await page.getByLabel('Label').selectOption('env=demo');
  await expect(page.getByTestId('host-card')).toHaveCount(1);
  await expect(page.getByTestId('fleet-totals')).not.toContainText(/\b1 hosts\b/);

  for (const vp of VIEWPORTS) {
    await page.setViewportSize(vp);
    await page.goto('/admin?tab=agents');
    const twins = page.getByRole('button', { name: /^Revoke twin-vm \(/ });
    await expect(twins).toHaveCount(2);
    await twins.first().click();
    const identity = page.getByTestId('revoke-identity');
    await expect(identity).toContainText('Agent id');
    await expect(identity).toContainText('Last seen');
    await shot(page, `revoke-dialog-${vp.width}x${vp.height}`);
    await page.getByRole('button', { name: 'Keep it' }).click();
  }
  expect(favicon404s).toEqual([]);
  await context.close();

  const created = await operatorApi.ok(
    operatorApi.post<{ request: { id: string } }>('/api/requests', {
      kind: 'library',
      scriptId: 'interpreter.info',
      targets: { type: 'processes', processes: [{ agentId: demoAgentId, pid: 4242, startTime: '104242' }] },
      reason: 'E2E: a rejection must say why',
    }),
  );
  const approver = await ApiClient.signIn(base(), USERS.approver);
  const bare = await approver.request('POST', `/api/requests/${created.request.id}/reviews`, {
    decision: 'reject',
  });
  expect(bare.status).toBe(400);
  expect(JSON.stringify(bare.body)).toContain('comment');

  const ap = await signedIn(browser, USERS.approver);
  for (const vp of VIEWPORTS) {
    await ap.page.setViewportSize(vp);
    await ap.page.goto('/approvals');
    const card = ap.page.getByTestId('pending-request').filter({ hasText: 'E2E: a rejection must say why' });
    await card.getByRole('button', { name: 'Reject' }).click();
    await expect(card.getByRole('alert')).toContainText('Say why you reject it');
    await shot(ap.page, `reject-needs-comment-${vp.width}x${vp.height}`);
  }
  const still = await admin.ok(
    admin.get<{ request: { state: string } }>(`/api/requests/${created.request.id}`),
  );
  expect(still.request.state).toBe('pending');
  await ap.context.close();
});
