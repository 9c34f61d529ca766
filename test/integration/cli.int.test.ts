/**
 * The operator CLI `pyreach` (apps/cli) as a child process against the REAL control plane, a real agent and a
 * real CPython 3.14 target: with a service-account token it lists hosts and processes, files a request with
 * `request create --wait` that returns the target's output and exit 0 once a person approved it over their
 * own API session, streams output with `request watch`, refuses a token file others can read, and answers
 * usage errors with exit 2 and reviews with 3 (a token never reviews). `request cancel` cancels (audited as the
 * service account, with its token), a request that partly succeeded exits 5, and `audit search|export|verify`
 * work with a token whose role allows them (export: exit 3 for an operator's).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { REPO_ROOT, startControlPlane, USERS, type ControlPlane } from '../support/control-plane';
import { eventually } from '../support/eventually';
import { startPython, type PyTarget } from '../support/python';

/** The shipped artefact (`npm run -w @pyreach/cli build`), built in `before`: what operators run. */
const CLI = join(REPO_ROOT, 'apps/cli/dist/pyreach.mjs');

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
  /** A second target, for a request that succeeds on one process and fails on the other. */
  let target2: PyTarget;
  let token = '';
  let saId = '';
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
    execFileSync(process.execPath, [join(REPO_ROOT, 'apps/cli/build.mjs')], { stdio: 'pipe' });
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
    saId = sa.serviceAccount.id;
    token = (
      await admin.ok(
        admin.post<{ token: string }>(`/api/service-accounts/${sa.serviceAccount.id}/tokens`, {}),
      )
    ).token;
    const join_ = await admin.ok(
      admin.post<{ joinToken: { token: string } }>('/api/join-tokens', { labels: { env: 'cli' } }),
    );
    [target, target2] = await Promise.all([
      startPython('idle.py', { style: 'host' }),
      startPython('idle.py', { style: 'host' }),
    ]);
    agent = new AgentProcess({ config: { server: cp.baseUrl, policy: { allowRoot: true } } });
    const enrolled = await agent.cli(['enroll', '--token', join_.joinToken.token]);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    agent.start();
    await agent.waitForLog('authenticated', 60_000);
  });
  after(async () => {
    await agent?.kill('SIGKILL');
    await target?.kill();
    await target2?.kill();
    await cp?.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  /** `AGENT:PID:START` of a target, read once per pid with `pyreach ps` (each CLI run costs a process start). */
  const seen = new Map<number, string>();
  const targetArg = async (pid = target.pid) => {
    const known = seen.get(pid);
    if (known) return known;
    const ps = await eventually('the target in pyreach ps', async () => {
      const r = await cli(['ps', '--selector', 'env=cli', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const { processes } = JSON.parse(r.stdout) as {
        processes: { agentId: string; pid: number; startTime: string }[];
      };
      return processes.find((p) => p.pid === pid);
    });
    seen.set(pid, `${ps.agentId}:${ps.pid}:${ps.startTime}`);
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
    // 20 KB past the first line: the request detail carries a preview of it, the CLI prints the whole output.
    writeFileSync(
      code,
      'print("hello from the cli")\nprint("-" * 20000 + " tail past the preview")\nresult = 6 * 7\n',
    );
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
    assert.match(r.stdout, /-{20000} tail past the preview/, 'the whole output, read past the preview');
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

  it('request cancel cancels a waiting request (audited as the service account) and exits 0', async () => {
    const code = join(home, 'never.py');
    writeFileSync(code, 'print("never runs")\n');
    const created = await cli([
      'request',
      'create',
      '--code-file',
      code,
      '--pid',
      await targetArg(),
      '--reason',
      'cli: to be cancelled',
      '--json',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as { request: { id: string; state: string } }).request.id;
    const cancelled = await cli(['request', 'cancel', id, '--reason', 'not needed after all', '--json']);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.equal((JSON.parse(cancelled.stdout) as { request: { state: string } }).request.state, 'cancelled');
    const again = await cli(['request', 'cancel', id]);
    assert.equal(again.code, 1, 'a request that already ended cannot be cancelled again');
    assert.match(again.stderr, /^pyreach: [A-Z_]+: /);
  });

  it('exits 5 when a request partly succeeded (one target ran, the other raised)', async () => {
    const code = join(home, 'half.py');
    writeFileSync(
      code,
      `import os\nif os.getpid() == ${target2.pid}:\n    raise RuntimeError("this target fails")\nprint("this target ran")\n`,
    );
    const reason = 'cli: partly';
    // The one that succeeds first: the rollout (one at a time, stop at one failure) then has nothing to stop.
    const running = cli([
      'request',
      'create',
      '--code-file',
      code,
      '--pid',
      await targetArg(target.pid),
      '--pid',
      await targetArg(target2.pid),
      '--reason',
      reason,
      '--wait',
      '--timeout',
      '240',
    ]);
    await approveWhenFiled(reason);
    const r = await running;
    assert.equal(r.code, 5, r.stderr + r.stdout);
    assert.match(r.stdout, /partially_succeeded/);
    assert.match(r.stdout, /this target ran/);
    assert.match(r.stdout, /this target fails/);
  });

  it('audit search, export and verify: with a token whose role allows it; export exits 3 for an operator', async () => {
    const search = await cli(['audit', 'search', '--action', 'request.cancel', '--json']);
    assert.equal(search.code, 0, search.stderr);
    const { events } = JSON.parse(search.stdout) as {
      events: { actorType: string; actorId: string; data: { tokenId?: string } }[];
    };
    const tokenId = /^pyr_(.+)_[A-Za-z0-9_-]{43}$/.exec(token)?.[1];
    assert.ok(
      events.some((e) => e.actorType === 'service' && e.actorId === saId && e.data.tokenId === tokenId),
      'the cancel is the service account, with the token it used',
    );

    const denied = await cli(['audit', 'export']);
    assert.equal(denied.code, 3, 'an operator may not export');
    assert.match(denied.stderr, /FORBIDDEN/);
    const auditor = await admin.ok(
      admin.post<{ serviceAccount: { id: string } }>('/api/service-accounts', {
        name: 'cli-auditor',
        role: 'approver',
      }),
    );
    const auditorToken = (
      await admin.ok(
        admin.post<{ token: string }>(`/api/service-accounts/${auditor.serviceAccount.id}/tokens`, {
          ttlDays: 1,
        }),
      )
    ).token;
    const jsonl = await cli(['audit', 'export', '--action', 'request.cancel'], {
      PYREACH_TOKEN: auditorToken,
    });
    assert.equal(jsonl.code, 0, jsonl.stderr);
    const lines = jsonl.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action?: string; checkpoint?: { seq: string } });
    assert.ok(lines.slice(0, -1).length >= 1);
    assert.ok(lines.slice(0, -1).every((l) => l.action === 'request.cancel'));
    assert.ok(lines.at(-1)?.checkpoint?.seq, 'ends with the signed checkpoint it stops at');
    const csv = await cli(['audit', 'export', '--format', 'csv'], { PYREACH_TOKEN: auditorToken });
    assert.equal(csv.code, 0, csv.stderr);
    assert.match(csv.stdout, /^seq,at,actorType,actorId,actorName,action,/);

    const verified = await cli(['audit', 'verify', '--json']);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal((JSON.parse(verified.stdout) as { valid: boolean }).valid, true);
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
