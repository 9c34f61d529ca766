/**
 * The operator CLI `pyreach` (apps/cli) as a child process against the REAL control plane, a real agent and a
 * real CPython 3.14 target: with a service-account token it lists hosts and processes, files a request with
 * `request create --wait` that returns the target's output and exit 0 once a person approved it over their
 * own API session, streams output with `request watch`, refuses a token file others can read, and answers
 * usage errors with exit 2 and reviews with 3 (a token never reviews).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { REPO_ROOT, startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { startPython, type PyTarget } from '../support/python';

const CLI = join(REPO_ROOT, 'apps/cli/bin/pyreach.mjs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('pyreach CLI against the real control plane, agent and CPython 3.14', () => {
  let cp: ControlPlane;
  let admin: ApiClient, approver: ApiClient;
  let agent: AgentProcess;
  let target: PyTarget;
  let token = '';
  const home = mkdtempSync(join(tmpdir(), 'pyreach-cli-home-'));

  const cli = (
    args: string[],
    env: Record<string, string> = {},
    onStdout?: (s: string) => void,
    onStderr?: (s: string) => void,
  ) =>
    new Promise<Run>((resolve, reject) => {
      const p = spawn(process.execPath, [CLI, ...args], {
        env: { PATH: process.env.PATH, HOME: home, PYREACH_URL: cp.baseUrl, PYREACH_TOKEN: token, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        onStdout?.(stdout);
      });
      p.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        onStderr?.(stderr);
      });
      p.stdin.end();
      p.once('error', reject);
      p.once('exit', (code) => resolve({ code, stdout, stderr }));
    });

  /** Approves the newest pending request of the service account's owner (a person, fresh sign-in). */
  const approveWhenFiled = async (reason: string) => {
    const req = await eventually(`request '${reason}' filed`, async () => {
      const r = await approver.ok(
        approver.get<{ requests: { id: string; reason: string; state: string }[] }>(
          '/api/requests?state=pending',
        ),
      );
      return r.requests.find((x) => x.reason === reason);
    });
    await approver.ok(approver.post(`/api/requests/${req.id}/reviews`, { decision: 'approve' }));
    return req.id;
  };

  before(async () => {
    cp = await startControlPlane('pglite');
    [admin, approver] = await Promise.all([
      ApiClient.signIn(cp.baseUrl, USERS.admin),
      ApiClient.signIn(cp.baseUrl, USERS.approver),
    ]);
    await admin.ok(
      admin.post('/api/policies', {
        name: 'cli',
        matchLabels: { env: 'cli' },
        priority: 50,
        requiredApprovals: 1,
        allowCustomCode: true,
      }),
    );
    const sa = await admin.ok(
      admin.post<{ serviceAccount: { id: string } }>('/api/service-accounts', {
        name: 'cli-test',
        role: 'operator',
      }),
    );
    token = (
      await admin.ok(
        admin.post<{ token: string }>(`/api/service-accounts/${sa.serviceAccount.id}/tokens`, {}),
      )
    ).token;
    const join_ = await admin.ok(
      admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'cli' } }),
    );
    target = await startPython('idle.py', { style: 'host' });
    agent = new AgentProcess({ config: { server: cp.baseUrl, policy: { allowRoot: true } } });
    const enrolled = await agent.cli(['enroll', '--token', join_.joinToken.token]);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    agent.start();
    await agent.waitForLog('authenticated', 60_000);
  });
  after(async () => {
    await agent?.kill('SIGKILL');
    await target?.kill();
    await cp?.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  const targetArg = async () => {
    const ps = await eventually('the target in pyreach ps', async () => {
      const r = await cli(['ps', '--selector', 'env=cli', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const { processes } = JSON.parse(r.stdout) as {
        processes: { agentId: string; pid: number; startTime: string }[];
      };
      return processes.find((p) => p.pid === target.pid);
    });
    return `${ps.agentId}:${ps.pid}:${ps.startTime}`;
  };

  it('lists hosts and processes with a token', async () => {
    const hosts = await cli(['hosts']);
    assert.equal(hosts.code, 0, hosts.stderr);
    assert.match(hosts.stdout, /online/);
    assert.match(await targetArg(), /^[\w-]+:\d+:\d+$/);
    const scripts = await cli(['scripts']);
    assert.equal(scripts.code, 0);
    assert.match(scripts.stdout, /threads\.dump_stacks/);
  });

  it('request create --wait returns the output once a person approved, and exits 0', async () => {
    const code = join(home, 'hello.py');
    writeFileSync(code, 'print("hello from the cli")\nresult = 6 * 7\n');
    const reason = 'cli: create --wait';
    const running = cli([
      'request',
      'create',
      '--code-file',
      code,
      '--pid',
      await targetArg(),
      '--reason',
      reason,
      '--wait',
      '--timeout',
      '240',
    ]);
    await approveWhenFiled(reason);
    const r = await running;
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /hello from the cli/);
    assert.match(r.stdout, /succeeded/);
    assert.match(r.stdout, /result: 42/);
  });

  it('request watch streams the output live over the /ui socket', async () => {
    const code = join(home, 'slow.py');
    writeFileSync(
      code,
      'import time\nprint("first", flush=True)\ntime.sleep(2)\nprint("second", flush=True)\n',
    );
    const reason = 'cli: watch';
    const created = await cli([
      'request',
      'create',
      '--code-file',
      code,
      '--pid',
      await targetArg(),
      '--reason',
      reason,
      '--json',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as { request: { id: string } }).request.id;
    let sawFirstAlone = false;
    let subscribed = false;
    const watching = cli(
      ['request', 'watch', id, '--json', '--timeout', '240'],
      {},
      (s) => {
        if (s.includes('first') && !s.includes('second') && !s.includes('"end"')) sawFirstAlone = true;
      },
      (e) => (subscribed ||= e.includes('watching request')),
    );
    // Approve only once the CLI is subscribed, so every chunk is pushed to it.
    await eventually('the CLI subscribed', () => subscribed);
    await approveWhenFiled(reason);
    const r = await watching;
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; chunk?: string });
    assert.ok(
      events.some((e) => e.event === 'output' && e.chunk?.includes('first')),
      r.stdout,
    );
    assert.equal(events.at(-1)?.event, 'end');
    assert.ok(sawFirstAlone, 'the first line arrived before the run finished (streamed, not at the end)');
    const show = await cli(['request', 'show', id]);
    assert.equal(show.code, 0);
    assert.match(show.stdout, /second/);
  });

  it('exit codes: 2 for usage errors, 3 for reviews and refused tokens, 4 when --wait runs out', async () => {
    assert.equal((await cli(['request', 'create', '--reason', 'x'])).code, 2);
    assert.equal((await cli(['bogus'])).code, 2);
    const badParam = await cli([
      'request',
      'create',
      '--script',
      'threads.dump_stacks',
      '--param',
      'nosuch=1',
      '--selector',
      'env=cli',
      '--reason',
      'bad param',
    ]);
    assert.equal(badParam.code, 2, badParam.stderr);
    const review = await cli(['review', 'req_x']);
    assert.equal(review.code, 3);
    assert.match(review.stdout, /\/requests\/req_x/);
    const forged = await cli(['hosts'], { PYREACH_TOKEN: `${token}x` });
    assert.equal(forged.code, 3);
    assert.match(forged.stderr, /TOKEN_INVALID/);
    const code = join(home, 'noop.py');
    writeFileSync(code, 'pass\n');
    const waiting = await cli([
      'request',
      'create',
      '--code-file',
      code,
      '--pid',
      await targetArg(),
      '--reason',
      'nobody approves',
      '--wait',
      '--timeout',
      '1',
    ]);
    assert.equal(waiting.code, 4, waiting.stderr + waiting.stdout);
  });

  it('login stores the token 0600 and the CLI refuses a token file others can read', async () => {
    const login = await cli(['login', '--url', cp.baseUrl, '--token', token], {
      PYREACH_TOKEN: '',
      PYREACH_URL: '',
    });
    assert.equal(login.code, 0, login.stderr);
    const file = join(home, '.config/pyreach/token');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const stored = await cli(['hosts'], { PYREACH_TOKEN: '', PYREACH_URL: '' });
    assert.equal(stored.code, 0, stored.stderr);
    chmodSync(file, 0o644);
    const refused = await cli(['hosts'], { PYREACH_TOKEN: '', PYREACH_URL: '' });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /readable by others/);
    mkdirSync(join(home, 'unused'), { recursive: true });
  });
});
