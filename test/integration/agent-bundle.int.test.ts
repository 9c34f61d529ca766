/**
 * The packaged artefact: `npm run -w apps/agent build` produces one file that runs with plain `node` (no tsx,
 * no node_modules next to it) — enrols, connects, discovers and runs a job in a real CPython 3.14 target.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { StacksReport } from '@pyreach/protocol/inspect';
import { AGENT_BUNDLE, AgentProcess, FakeControlPlane } from '../support/agent-harness';
import { REPO_ROOT, startPython, type PyTarget } from '../support/python';

const cp = new FakeControlPlane();
let agent: AgentProcess;
let target: PyTarget;

before(async () => {
  execFileSync(process.execPath, [join(REPO_ROOT, 'apps/agent/build.mjs')], { stdio: 'pipe' });
  target = await startPython('idle.py', { style: 'host' });
  await cp.start();
});
after(async () => {
  await agent?.kill('SIGKILL');
  await cp.stop();
  await target?.kill();
});

test('the bundle is one executable file that runs outside the repository', () => {
  assert.ok(statSync(AGENT_BUNDLE).mode & 0o100);
  const alone = join(mkdtempSync(join(tmpdir(), 'pyreach-bundle-')), 'pyreach-agent.mjs');
  copyFileSync(AGENT_BUNDLE, alone);
  const out = execFileSync(process.execPath, [alone, '--help'], { encoding: 'utf8', cwd: tmpdir() });
  assert.match(out, /pyreach-agent enroll --server URL --token TOKEN/);
  for (const cmd of ['enroll', 'run', 'status'])
    assert.match(
      execFileSync(process.execPath, [alone, cmd, '--help'], { encoding: 'utf8', cwd: tmpdir() }),
      new RegExp(`pyreach-agent ${cmd}`),
    );
});

test('the bundle enrols, reports inventory and runs a signed job to its result', async () => {
  agent = new AgentProcess({ bundle: true, config: { server: cp.url, policy: { allowRoot: true } } });
  const enrolled = await agent.cli(['enroll', '--token', cp.newToken()]);
  assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
  agent.start();
  const agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId as string;
  const p = await cp.until(() => cp.processes.get(String(target.pid)), 30_000, 'target in inventory');
  const job = cp.job(agentId, { pid: p.pid, startTime: p.startTime }, 'print("bundled")\nresult = 1\n');
  assert.equal((await cp.dispatch(cp.sign(job))).ok, true);
  const res = await cp.until(() => cp.resultOf(job.jobId), 30_000, 'result');
  assert.equal(res.result.status, 'succeeded');
  assert.equal(res.result.output, 'bundled\n');
});

test('the bundle reads an inspection in its own child (itself, re-executed) and reports the stacks', async () => {
  const agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId as string;
  const p = await cp.until(() => cp.processes.get(String(target.pid)), 30_000, 'target in inventory');
  const job = cp.inspectJob(agentId, { pid: p.pid, startTime: p.startTime }, 'stacks');
  assert.equal((await cp.dispatch(cp.signV2(job))).ok, true);
  const res = await cp.until(() => cp.resultOf(job.jobId), 30_000, 'inspection result');
  assert.equal(res.result.status, 'succeeded', JSON.stringify(res.result).slice(0, 2000));
  const report = StacksReport.parse(res.result.result);
  assert.equal(report.pid, target.pid);
  assert.ok(report.threads.find((t) => t.main)!.frames.some((f) => f.file.endsWith('idle.py')));
});
