/** `pyreach-agent enroll`: key pair on the host, token + public key to the control plane, pin its signing key. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { EnrollRequest, EnrollResponse } from '@pyreach/protocol/agent';
import { Failure, PROTOCOL_VERSION } from '@pyreach/protocol/common';
import { keyIdOf, publicKeyFromPem } from '@pyreach/protocol/job';
import { AuditLog } from './audit';
import type { AgentConfig } from './config';
import { postJson } from './http';
import { ensureKeyPair, prepareStateDir, saveIdentity, type Identity } from './identity';
import { AGENT_VERSION } from './version';

export class EnrollError extends Error {
  override name = 'EnrollError';
}

export async function enroll(config: AgentConfig, token: string): Promise<Identity> {
  if (!config.server)
    throw new EnrollError(
      'server: no control-plane URL (use --server URL, PYREACH_AGENT_SERVER or "server" in the config file)',
    );
  prepareStateDir(config.stateDir);
  const { publicKeyPem } = ensureKeyPair(config.stateDir);
  const req = EnrollRequest.safeParse({
    v: PROTOCOL_VERSION,
    token,
    publicKey: publicKeyPem,
    hostname: config.hostname ?? hostname(), // [k8s] the node name in a DaemonSet
    labels: config.labels,
    agentVersion: AGENT_VERSION,
  });
  if (!req.success)
    throw new EnrollError(
      `cannot build the enrolment request: ${req.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const url = new URL('/api/agents/enroll', config.server).toString();
  const ca = config.caFile ? readFileSync(config.caFile, 'utf8') : undefined;
  let res: { status: number; body: unknown };
  try {
    res = await postJson(url, req.data, ca ? { ca } : {});
  } catch (e) {
    throw new EnrollError(`cannot reach ${url}: ${(e as Error).message}`);
  }
  const failure = Failure.safeParse(res.body);
  if (failure.success)
    throw new EnrollError(
      `enrolment refused (${res.status} ${failure.data.error.code}): ${failure.data.error.message}`,
    );
  const ok = EnrollResponse.safeParse(res.body);
  if (!ok.success)
    throw new EnrollError(
      `unexpected answer from ${url} (HTTP ${res.status}): ${JSON.stringify(res.body).slice(0, 300)}`,
    );
  // Pin only a key that matches its advertised id.
  const key = publicKeyFromPem(ok.data.signingPublicKey);
  if (keyIdOf(key) !== ok.data.signingKeyId)
    throw new EnrollError(
      'the control plane sent a signing key that does not match its key id; refusing to pin it',
    );
  const identity: Identity = {
    agentId: ok.data.agentId,
    server: config.server,
    signingPublicKey: ok.data.signingPublicKey,
    signingKeyId: ok.data.signingKeyId,
    enrolledAt: new Date().toISOString(),
    hostname: config.hostname ?? hostname(), // [k8s] the node name in a DaemonSet
    labels: config.labels,
  };
  saveIdentity(config.stateDir, identity);
  const audit = new AuditLog(config.stateDir);
  audit.write({
    event: 'enrolled',
    agentId: identity.agentId,
    server: identity.server,
    signingKeyId: identity.signingKeyId,
  });
  audit.close();
  return identity;
}
