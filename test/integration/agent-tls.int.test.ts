/**
 * TLS with a pinned CA: the real agent process enrols and connects over HTTPS/WSS to a control plane whose
 * certificate is issued by a private CA, when (and only when) that CA is configured as `caFile`.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { AgentProcess, FakeControlPlane, makeTestPki } from '../support/agent-harness';

const pki = makeTestPki();
const cp = new FakeControlPlane();
const agents: AgentProcess[] = [];

before(async () => {
  cp.tls = { key: pki.key, cert: pki.cert };
  await cp.start();
});
after(async () => {
  for (const a of agents) await a.kill('SIGKILL');
  await cp.stop();
  rmSync(pki.dir, { recursive: true, force: true });
});

test('without the pinned CA the agent refuses the control plane certificate', async () => {
  const agent = new AgentProcess({ config: { server: cp.url } });
  agents.push(agent);
  const r = await agent.cli(['enroll', '--token', cp.newToken()]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /cannot reach https:\/\/127\.0\.0\.1:\d+\/api\/agents\/enroll: .*(self-signed|unable to verify|issuer)/i,
  );
});

test('with the CA pinned it enrols, connects over wss and authenticates', async () => {
  const agent = new AgentProcess({ config: { server: cp.url, caFile: pki.caFile } });
  agents.push(agent);
  const r = await agent.cli(['enroll', '--token', cp.newToken()]);
  assert.equal(r.code, 0, r.stderr);
  const before = cp.authCount;
  agent.start();
  await cp.until(() => cp.authCount > before && cp.snapshots.length > 0, 30_000, 'authenticated over TLS');
  await agent.waitForLog('authenticated');
});
