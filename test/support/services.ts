/**
 * Factories for the control plane's service tests (apps/web/src/server/services/*.test.ts): real databases,
 * real rows, made through the services themselves.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { PROTOCOL_VERSION } from '@pyreach/protocol/common';
import { keyIdOf } from '@pyreach/protocol/job';
import type { InventorySnapshot, PythonProcess } from '@pyreach/protocol/inventory';
import type { PrismaClient } from '@pyreach/db';
import { DATABASE_KINDS, createTestDatabase, type TestDatabase } from '@pyreach/db/testing';
import type { Actor, Role } from '../../apps/web/src/server/services/actor';
import type { AttestationKey } from '../../apps/web/src/server/services/attest';
import { createJoinToken, enrollAgent } from '../../apps/web/src/server/services/agents';
import { planExecutions, sendWave } from '../../apps/web/src/server/services/dispatch';
import { createRequest, reviewRequest } from '../../apps/web/src/server/services/requests';
import { loadOrCreateSigningKey } from '../../apps/web/src/server/services/signing';
import { newId } from '../../apps/web/src/server/services/ids';
import { saveSnapshot } from '../../apps/web/src/server/services/inventory';
import { policyOf } from '../../apps/web/src/server/services/policy';
import { sealPolicies } from '../../apps/web/src/server/services/policy-seal';
import { PolicyInput } from '@pyreach/protocol/api';
import { fakeProcess } from './test-agent';

/** A key pair as the control plane loads one (signing.ts), made in memory for a test. */
export function testKeyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey,
    publicKey,
    keyId: keyIdOf(publicKey),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** The job-signing and vote-attestation keys of one test control plane. */
export function testKeys() {
  return { signing: testKeyPair(), attestation: testKeyPair() };
}

/** Runs `body` once per database kind, each with a fresh migrated database shared by the suite's tests. */
export function describeEachDatabase(name: string, body: (db: () => TestDatabase) => void): void {
  for (const kind of DATABASE_KINDS) {
    describe(`${name} (${kind})`, () => {
      let db: TestDatabase | undefined;
      before(async () => {
        db = await createTestDatabase(kind);
      });
      after(() => db?.cleanup());
      body(() => {
        if (!db) throw new Error('database not ready');
        return db;
      });
    });
  }
}

export type UserActor = Extract<Actor, { type: 'user' }>;

/** Inserts a user with `role` and returns it as an actor. */
export async function seedUser(prisma: PrismaClient, role: Role, name: string = role): Promise<UserActor> {
  const id = newId('u');
  await prisma.user.create({ data: { id, name, email: `${id}@example.test`, role } });
  return { type: 'user', id, name, role };
}

/**
 * Inserts a policy as configuration (defaults filled by the API's schema) and seals the set with `key` (the
 * attestation key of the control plane under test), the way seedUser inserts a user: for
 * tests about requests under a policy, not about who may change policies (governance.ts has those, through the
 * service and its second-admin confirmation).
 */
export async function seedPolicy(prisma: PrismaClient, input: PolicyInput, key: AttestationKey) {
  const data = PolicyInput.parse(input);
  return prisma.$transaction(async (tx) => {
    const row = await tx.policy.create({
      data: { id: newId('pol'), ...data, description: data.description ?? null },
    });
    // Sealed as the control plane seals its own writes (policy-seal.ts): unsealed policies decide nothing.
    await sealPolicies(tx, key, policyOf);
    return policyOf(row);
  });
}

export function agentKeyPem(): string {
  return generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

/** Enrols an agent through a fresh join token (created by `admin`), optionally with its first inventory. */
export async function seedAgent(
  prisma: PrismaClient,
  admin: UserActor,
  opts: {
    labels?: Record<string, string>;
    hostname?: string;
    processes?: PythonProcess[];
    /** The token's namespace declaration (needs `attestation`: declarations are signed). */
    namespaceLabels?: Record<string, Record<string, string>>;
    /** Signs the token's and the agent's declarations (without it none of the agent's namespaces price). */
    attestation?: AttestationKey;
  } = {},
) {
  const { token } = await createJoinToken(
    prisma,
    admin,
    {
      labels: opts.labels ?? {},
      ...(opts.namespaceLabels ? { namespaceLabels: opts.namespaceLabels } : {}),
    },
    new Date(),
    opts.attestation,
  );
  const hostname = opts.hostname ?? `host-${newId('h').slice(2, 8)}`;
  const { result: agent } = await enrollAgent(
    prisma,
    {
      v: PROTOCOL_VERSION,
      token,
      publicKey: agentKeyPem(),
      hostname,
      labels: {},
      agentVersion: '0.1.0',
    },
    new Date(),
    opts.attestation,
  );
  if (opts.processes)
    await saveSnapshot(prisma, agent.id, snapshot(hostname, opts.processes, opts.labels ?? {}));
  return agent;
}

/** A Python process as an agent reports it (the one factory, test-agent.ts), with a start time and command line
 * the services' tests rely on (start time 1000 + pid; `--worker=<pid>` to select by). */
export function pyProcess(pid: number, extra: Partial<PythonProcess> = {}): PythonProcess {
  return fakeProcess(pid, {
    startTime: String(1000 + pid),
    cmdline: ['/usr/bin/python3.14', 'app.py', `--worker=${pid}`],
    ...extra,
  });
}

export function snapshot(
  hostname: string,
  processes: PythonProcess[],
  labels: Record<string, string> = {},
): InventorySnapshot {
  return {
    host: { hostname, os: 'Debian 12', kernel: '6.1.0', arch: 'x86_64', agentVersion: '0.1.0', labels },
    processes,
    scannedAt: new Date().toISOString(),
  };
}

/**
 * One agent with `n` Python processes (pids 100…, as pyProcess makes them) under a policy of its own (one
 * approval, custom code allowed), an operator and an approver: where the report, results and request-detail
 * tests and benchmarks start. `approved()` files a custom-code request over all n targets and approves it, its
 * executions planned; `dispatched()` also sends its first wave. Either can be called again for another request.
 */
export async function requestWorld(
  prisma: PrismaClient,
  opts: { env: string; n: number; attestation: AttestationKey },
) {
  const admin = await seedUser(prisma, 'admin');
  const agent = await seedAgent(prisma, admin, {
    labels: { env: opts.env },
    processes: Array.from({ length: opts.n }, (_, i) => pyProcess(100 + i)),
  });
  await seedPolicy(
    prisma,
    {
      name: `p-${agent.id}`,
      matchLabels: { env: opts.env },
      priority: 10,
      requiredApprovals: 1,
      allowCustomCode: true,
    },
    opts.attestation,
  );
  const op = await seedUser(prisma, 'operator');
  const ap = await seedUser(prisma, 'approver');
  const signing = await loadOrCreateSigningKey({
    keyFile: path.join(await mkdtemp(path.join(tmpdir(), 'pk-')), 'k.pem'),
  });
  const processes = Array.from({ length: opts.n }, (_, i) => ({
    agentId: agent.id,
    pid: 100 + i,
    startTime: String(1100 + i),
  }));
  const approved = async (
    o: { code?: string; reason?: string; concurrency?: number; maxFailures?: number } = {},
  ) => {
    const { result: req } = await createRequest(
      prisma,
      op,
      {
        kind: 'custom',
        code: o.code ?? 'print(1)',
        targets: { type: 'processes', processes },
        reason: o.reason ?? `a request over the ${opts.n} targets of ${opts.env}`,
        rollout: { concurrency: o.concurrency ?? opts.n, maxFailures: o.maxFailures ?? opts.n },
      },
      new Date(),
      opts.attestation,
    );
    await reviewRequest(
      prisma,
      ap,
      req.id,
      { decision: 'approve' },
      { authenticatedAt: new Date(), attestation: opts.attestation },
    );
    await planExecutions(prisma, req.id);
    return req;
  };
  const dispatched = async (o: Parameters<typeof approved>[0] = {}) => {
    const req = await approved(o);
    const wave = await sendWave(prisma, req.id, { signing, attestation: opts.attestation }, () => true);
    return { req, sent: wave.result.map((j) => j.execution) };
  };
  return { prisma, admin, agent, op, ap, signing, approved, dispatched };
}
