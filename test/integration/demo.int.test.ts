/**
 * The README's first command, end to end: `npm run demo` from a fresh clone starts the control plane on the
 * embedded database, an enrolled local agent and the demo service; through the API an operator asks for the
 * log-level change, an approver approves, and the demo service's log shows DEBUG lines; Ctrl-C (SIGINT)
 * stops everything and no process is left.
 *
 * Two shortcuts keep this inside the suite's time budget, and neither changes what the demo runs:
 *   - dependencies are hard-linked from this checkout into the clone instead of downloaded again (the demo
 *     runs `npm install` itself when node_modules is missing; that path is plain npm);
 *   - the dashboard build is skipped (`--no-build`: API and sockets only); the browser tests cover the UI.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../support/api';
import { cloneForDemo, freePort, startDemo, type DemoClone, type RunningDemo } from '../support/demo';

let clone: DemoClone;
let demo: RunningDemo | null = null;

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined> | T | null | undefined,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${demo?.diagnostics() ?? ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(() => {
  clone = cloneForDemo();
});

after(() => {
  if (demo?.child.pid && demo.child.exitCode === null) {
    try {
      process.kill(-demo.child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  clone?.cleanup();
});

describe('npm run demo from a fresh clone', { timeout: 360_000 }, () => {
  it('injects the log-level change into the demo service through the API, then stops everything on Ctrl-C', async () => {
    const data = join(clone.dir, 'data');
    const run = (demo = startDemo(clone, { data, port: await freePort(), args: ['--no-build'] }));
    const out = (): string => run.output();

    const readyLine = await waitFor(
      'the demo to say it is ready',
      () =>
        out()
          .split('\n')
          .find((l) => l.startsWith('demo: ready ')),
      150_000,
    );
    const ready = JSON.parse(readyLine.slice('demo: ready '.length)) as {
      url: string;
      servicePid: number;
      users: { email: string; role: string; password: string }[];
    };
    const pw = (role: string) => ready.users.find((u) => u.role === role)!.password;
    assert.match(out(), /Open http:\/\/127\.0\.0\.1:\d+ and sign in/);
    for (const role of ['admin', 'operator', 'approver'])
      assert.ok(pw(role), `a password is printed for ${role}`);

    const operator = await ApiClient.signIn(ready.url, 'operator@pyreach.local', pw('operator'));
    const proc = await waitFor(
      'the agent to report the demo service',
      async () => {
        const r = await operator.ok(
          operator.get<{
            processes: {
              pid: number;
              startTime: string;
              agentId?: string;
              host?: { agentId: string };
              hostId: string;
            }[];
          }>('/api/fleet/processes'),
        );
        return r.processes.find((p) => p.pid === ready.servicePid);
      },
      60_000,
    );
    const hosts = await operator.ok(
      operator.get<{ hosts: { id: string; agentId: string }[] }>('/api/fleet/hosts'),
    );
    const agentId = proc.agentId ?? hosts.hosts.find((h) => h.id === proc.hostId)!.agentId;

    const serviceLog = join(data, 'service.log');
    // The service's log format: "<time> DEBUG <thread> demo.orders: order 17: customer=… total=…".
    const debugLine = /DEBUG\s+\S+ demo\.orders: order \d+: customer=/;
    await waitFor(
      'the demo service to log orders',
      () => /INFO\s+\S+ demo\.orders: order \d+ charged/.test(readFileSync(serviceLog, 'utf8')),
      20_000,
    );
    assert.doesNotMatch(readFileSync(serviceLog, 'utf8'), debugLine, 'no DEBUG lines before the change');

    const created = await operator.ok(
      operator.post<{ request: { id: string; state: string } }>('/api/requests', {
        kind: 'library',
        scriptId: 'logging.set_level',
        params: { logger: 'demo.orders', level: 'DEBUG' },
        targets: { type: 'processes', processes: [{ agentId, pid: proc.pid, startTime: proc.startTime }] },
        reason: 'order failures: need the DEBUG context',
      }),
    );
    assert.equal(created.request.state, 'pending', 'the demo policy needs an approval');

    const approver = await ApiClient.signIn(ready.url, 'approver@pyreach.local', pw('approver'));
    await approver.ok(
      approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve', comment: 'go' }),
    );

    const done = await waitFor(
      'the execution to finish',
      async () => {
        const r = await operator.ok(
          operator.get<{
            request: {
              state: string;
              executions: {
                state: string;
                output: string;
                result: { result?: { previous?: string } } | null;
              }[];
            };
          }>(`/api/requests/${created.request.id}`),
        );
        const ex = r.request.executions[0];
        return ex && !['queued', 'sent', 'staged', 'picked_up'].includes(ex.state) ? ex : null;
      },
      60_000,
    );
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.match(done.output, /'demo\.orders': NOTSET \(inherits INFO\) -> DEBUG/);
    await waitFor(
      'DEBUG lines in the demo service log',
      () => debugLine.test(readFileSync(serviceLog, 'utf8')),
      20_000,
    );

    run.ctrlC();
    const end = await Promise.race([
      run.exited,
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`the demo did not exit within 30 s of Ctrl-C\n${run.diagnostics()}`)),
          30_000,
        ),
      ),
    ]);
    // npm itself dies of the SIGINT, as in a terminal; the demo under it stops its children and says so.
    assert.ok(end.code === 0 || end.signal === 'SIGINT', `npm ended with ${JSON.stringify(end)}`);
    await waitFor('the demo to report that it stopped', () => /demo: stopped\./.test(out()), 30_000);
    assert.doesNotMatch(out(), /did not stop in time/, 'every child stopped on SIGTERM');
    await waitFor(
      'every demo process to be gone',
      () => clone.processes().length === 0 || null,
      15_000,
    ).catch(() => {
      assert.deepEqual(clone.processes(), [], 'no process of the demo is left running');
    });
  });
});
