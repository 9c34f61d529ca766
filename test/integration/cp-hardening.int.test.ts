/**
 * Issue 10, the control plane's side, through the real agent process, the real control-plane server and real
 * CPython 3.14 targets, on PGlite and on PostgreSQL:
 * - NUL, invalid UTF-8, lone surrogates and ANSI escapes in output AND results are stored losslessly as safe
 *   text, returned by the API in that form, nothing is refused, and the next job on the host runs and is
 *   recorded correctly (not "expired");
 * - cancel means stop: code that keeps writing a heartbeat file stops within a second of the cancel, the
 *   execution ends `cancelled` with its output so far, the request ends `cancelled`.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSafeText } from '@pyreach/protocol/text';
import { AgentProcess } from '../support/agent-harness';
import { ApiClient } from '../support/api';
import { startControlPlane, USERS, type ControlPlane, type DbKind } from '../support/control-plane';
import { startPython, type PyTarget } from '../support/python';
import { eventually } from '../support/eventually';

type Exec = {
  id: string;
  jobId: string;
  state: string;
  errorCode: string | null;
  errorMessage?: string | null;
  output?: string | null;
  result?: unknown;
  leftoverThread?: unknown;
  pid: number;
};
type Req = { id: string; state: string; executions?: Exec[] };
type Proc = { pid: number; startTime: string; agentId: string };

const esc = (byte: number) => String.fromCodePoint(0x10ff00 + byte);
const size = (f: string) => (existsSync(f) ? statSync(f).size : 0);

for (const kind of ['pglite', 'postgres'] as DbKind[]) {
  describe(`control-plane hardening through the real agent (${kind})`, { timeout: 600_000 }, () => {
    let cp: ControlPlane;
    let admin: ApiClient, operator: ApiClient, approver: ApiClient;
    let agent: AgentProcess;
    let target: PyTarget;
    const files: string[] = [];

    const agentId = (): string =>
      JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId;
    const getReq = async (id: string) =>
      (await operator.ok(operator.get<{ request: Req }>(`/api/requests/${id}`))).request;
    const approved = async (code: string, reason: string, options?: Record<string, unknown>) => {
      const p = await eventually(`pid ${target.pid} in the fleet`, async () => {
        const r = await admin.ok(admin.get<{ processes: Proc[] }>(`/api/fleet/processes?limit=10000`));
        return r.processes.find((x) => x.pid === target.pid);
      });
      const created = await operator.ok(
        operator.post<{ request: Req }>('/api/requests', {
          kind: 'custom',
          code,
          targets: {
            type: 'processes',
            processes: [{ agentId: agentId(), pid: p.pid, startTime: p.startTime }],
          },
          reason,
          ...(options ? { options } : {}),
        }),
      );
      await approver.ok(
        approver.post(`/api/requests/${created.request.id}/reviews`, { decision: 'approve', comment: 'ok' }),
      );
      return created.request;
    };
    const finished = (id: string) =>
      eventually(
        `request ${id} to end`,
        async () => {
          const r = await getReq(id);
          return (
            ['succeeded', 'partially_succeeded', 'failed', 'cancelled', 'expired'].includes(r.state) && r
          );
        },
        90_000,
      );

    before(async () => {
      target = await startPython('idle.py', { style: 'host' });
      cp = await startControlPlane(kind);
      [admin, operator, approver] = (await Promise.all(
        [USERS.admin, USERS.operator, USERS.approver].map((u) => ApiClient.signIn(cp.baseUrl, u)),
      )) as [ApiClient, ApiClient, ApiClient];
      await admin.ok(
        admin.post('/api/policies', {
          name: 'cp-hardening',
          matchLabels: { env: 'cp-hardening' },
          priority: 100,
          requiredApprovals: 1,
          allowCustomCode: true,
          approverRoles: ['approver', 'admin'],
        }),
      );
      const token = (
        await admin.ok(
          admin.post<{ joinToken: { token: string } }>('/api/join-tokens', {
            labels: { env: 'cp-hardening' },
          }),
        )
      ).joinToken.token;
      agent = new AgentProcess({ config: { server: cp.baseUrl, policy: { allowRoot: true } } });
      const enrolled = await agent.cli(['enroll', '--token', token, '--label', 'env=cp-hardening']);
      assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
      agent.start();
    });

    after(async () => {
      await agent?.kill('SIGKILL');
      await cp?.cleanup();
      await target?.kill();
      for (const f of files) rmSync(f, { force: true });
    });

    test('NUL, invalid UTF-8, lone surrogates and ANSI escapes in output and result: stored losslessly, the next job recorded correctly', async () => {
      // The harness captures print() as UTF-8 with surrogatepass: a lone surrogate becomes bytes that are not
      // valid UTF-8 (ED A0 80), as does a byte smuggled in through surrogateescape (ED B3 BF).
      const code = [
        'print("nul:a\\x00b esc:\\x1b[2J\\x1b[31mred\\x1b[0m cr:\\r")',
        'print("lone:\\ud800")',
        'print("bad:" + b"\\xff".decode("utf-8", "surrogateescape"))',
        'result = {"nul\\x00": "v\\x00", "esc": "\\x1b[2J", "lone": "\\udc80", "latin": b"\\xff".decode("latin-1")}',
        '',
      ].join('\n');
      const req = await approved(code, 'cp-hardening: hostile bytes');
      const done = await finished(req.id);
      const ex = done.executions![0]!;
      assert.equal(done.state, 'succeeded', JSON.stringify(ex));
      const out = ex.output ?? '';
      assert.ok(isSafeText(out), 'the API returns safe text, never raw control characters');
      const bytes = (...b: number[]) => b.map(esc).join('');
      assert.equal(
        out,
        `nul:a${esc(0)}b esc:${esc(0x1b)}[2J${esc(0x1b)}[31mred${esc(0x1b)}[0m cr:${esc(0x0d)}\n` +
          `lone:${bytes(0xed, 0xa0, 0x80)}\n` +
          `bad:${bytes(0xed, 0xb3, 0xbf)}\n`,
        'stored losslessly: every byte that is not safe text is its escape',
      );
      const result = ex.result as Record<string, string>;
      assert.equal(result[`nul${esc(0)}`], `v${esc(0)}`);
      assert.equal(result.esc, `${esc(0x1b)}[2J`);
      assert.ok(isSafeText(result.lone!) && result.lone!.length > 0, JSON.stringify(result.lone));
      assert.equal(result.latin, 'ÿ', 'a valid code point stays itself');
      assert.ok(!agent.audit().some((a) => a.event === 'delivery_rejected'), 'nothing was refused');

      // The host keeps working: the next job runs and is recorded as what it was.
      const next = await approved('print("next")\n', 'cp-hardening: after hostile bytes');
      const after = await finished(next.id);
      assert.equal(after.state, 'succeeded', JSON.stringify(after.executions));
      assert.equal(after.executions![0]!.output, 'next\n');
    });

    test('cancel while running: the code stops within a second, the execution and the request end cancelled', async () => {
      const beat = `/tmp/pyreach-cp-cancel-${process.pid}-${kind}.txt`;
      files.push(beat);
      rmSync(beat, { force: true });
      const code = [
        'import time',
        'print("started", flush=True)',
        'while True:',
        `    with open(${JSON.stringify(beat)}, "a") as f:`,
        '        f.write("beat\\n")',
        '    time.sleep(0.05)',
        '',
      ].join('\n');
      const req = await approved(code, 'cp-hardening: cancel', { budgetSeconds: 600 });
      await eventually('the heartbeat file to grow', () => size(beat) > 100, 60_000);
      const running = await getReq(req.id);
      assert.equal(running.executions![0]!.state, 'picked_up');
      const cancelled = await operator.ok(
        operator.post<{ request: Req }>(`/api/requests/${req.id}/cancel`, { reason: 'stop it' }),
      );
      assert.ok(['dispatching', 'cancelled'].includes(cancelled.request.state));
      const cancelAt = Date.now();
      const done = await finished(req.id);
      const ex = done.executions![0]!;
      assert.equal(done.state, 'cancelled', JSON.stringify(ex));
      assert.equal(ex.state, 'cancelled');
      assert.equal(ex.errorCode, 'CANCELLED');
      assert.equal(ex.leftoverThread, null, 'Python code in a sleep loop is interruptible');
      assert.match(ex.output ?? '', /^started\n/, 'the output so far is kept');
      // Stopped within a second of the cancel: the file no longer grows.
      const waited = Date.now() - cancelAt;
      if (waited < 1000) await new Promise((r) => setTimeout(r, 1000 - waited));
      const settled = size(beat);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(size(beat), settled, 'the heartbeat file stopped growing');
      assert.ok(
        agent.audit().some((a) => a.jobId === ex.jobId && a.event === 'cancel_requested'),
        'the agent received job:cancel',
      );
    });
  });
}
