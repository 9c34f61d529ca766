/**
 * The packaged artefact: `npm run -w apps/agent build` produces one file that runs with plain `node` (no tsx,
 * no node_modules next to it) and koffi's native file beside it (the engine's FFI for safe staging) — enrols,
 * connects, discovers and runs a job in a real CPython 3.14 target, from a copy outside the repository; a
 * tampered staging ends STAGING_TAMPERED through the bundle as through the source.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { StacksReport } from '@pyreach/protocol/inspect';
import {
  assertHostileOutcome,
  HOSTILE_USER,
  makeCanaries,
  startAttacker,
  type Attacker,
} from '../hostile/kit';
import { AGENT_BUNDLE, AgentProcess, FakeControlPlane } from '../support/agent-harness';
import {
  privateContainerRoot,
  REPO_ROOT,
  startPython,
  withPythonRoot,
  type PyTarget,
} from '../support/python';

const cp = new FakeControlPlane();
let agent: AgentProcess;
let target: PyTarget;
/** The bundle and its koffi.node, copied where no node_modules can be found. */
let alone: string;

before(async () => {
  execFileSync(process.execPath, [join(REPO_ROOT, 'apps/agent/build.mjs')], { stdio: 'pipe' });
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-bundle-'));
  alone = join(dir, 'pyreach-agent.mjs');
  copyFileSync(AGENT_BUNDLE, alone);
  copyFileSync(join(dirname(AGENT_BUNDLE), 'koffi.node'), join(dir, 'koffi.node'));
  target = await startPython('idle.py', { style: 'host' });
  await cp.start();
});
after(async () => {
  await agent?.kill('SIGKILL');
  await cp.stop();
  await target?.kill();
});

test('the bundle is one executable file plus koffi.node beside it, and runs outside the repository', () => {
  assert.ok(statSync(AGENT_BUNDLE).mode & 0o100);
  assert.ok(existsSync(join(dirname(AGENT_BUNDLE), 'koffi.node')), 'koffi.node is built beside the bundle');
  const text = readFileSync(AGENT_BUNDLE, 'utf8');
  assert.ok(!text.includes('@koromix/'), 'koffi is not looked up in node_modules: only the file beside it');
  const out = execFileSync(process.execPath, [alone, '--help'], { encoding: 'utf8', cwd: tmpdir() });
  assert.match(out, /pyreach-agent enroll --server URL --token TOKEN/);
  for (const cmd of ['enroll', 'run', 'status'])
    assert.match(
      execFileSync(process.execPath, [alone, cmd, '--help'], { encoding: 'utf8', cwd: tmpdir() }),
      new RegExp(`pyreach-agent ${cmd}`),
    );
});

test('the bundle enrols, reports inventory and runs a signed job to its result', async () => {
  agent = new AgentProcess({ bundle: alone, config: { server: cp.url, policy: { allowRoot: true } } });
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

test('a staged job through the bundle: tampering in a container target ends STAGING_TAMPERED, nothing leaks', async () => {
  // A container-style target in a private root, its user's /tmp watched by an attacker of the same uid.
  const copy = privateContainerRoot();
  const canaries = makeCanaries();
  let t: PyTarget | null = null;
  let attacker: Attacker | null = null;
  try {
    t = await withPythonRoot(copy.root, () =>
      startPython('idle.py', { style: 'container', user: HOSTILE_USER }),
    );
    const agentId = JSON.parse(readFileSync(join(agent.stateDir, 'identity.json'), 'utf8')).agentId as string;
    const p = await cp.until(() => cp.processes.get(String(t!.pid)), 30_000, 'container target in inventory');
    attacker = await startAttacker({
      bases: [`/proc/${t.pid}/root/tmp`],
      mode: 'inotify',
      attacks: ['link-out'],
      canaries,
    });
    const job = cp.job(
      agentId,
      { pid: p.pid, startTime: p.startTime },
      'import time\nprint("x")\ntime.sleep(0.5)\nresult = 1\n',
    );
    assert.equal((await cp.dispatch(cp.sign(job))).ok, true);
    const res = (await cp.until(() => cp.resultOf(job.jobId), 60_000, 'result')).result;
    const landed = attacker.attempts().filter((a) => a.ok);
    assert.ok(landed.length > 0, `the attacker linked an output: ${JSON.stringify(attacker.attempts())}`);
    assertHostileOutcome(res, landed, canaries, { everything: cp.eventsOf(job.jobId) });
    const fin = agent.audit().find((a) => a.event === 'finished' && a.jobId === job.jobId);
    assert.equal(fin?.code, 'STAGING_TAMPERED');
    assert.match(String(fin?.message), /link/);
  } finally {
    await attacker?.kill();
    await t?.kill();
    canaries.cleanup();
    copy.cleanup();
  }
});
