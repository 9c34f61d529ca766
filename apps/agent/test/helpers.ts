import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { jobPayload } from '../../../test/support/jobs';
import {
  codeHash,
  signJob,
  signJobV2,
  type ExecPayloadV2,
  type JobEnvelopeV2,
  type JobPayload,
  type JobPayloadV2,
} from '@pyreach/protocol/job';

export function tempDir(prefix = 'pyreach-agent-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export const silentLog = pino({ level: 'silent' });

export interface Signer {
  privateKey: KeyObject;
  publicKey: KeyObject;
  sign(p: JobPayload): ReturnType<typeof signJob>;
  signV2(p: JobPayloadV2): JobEnvelopeV2;
}

export function signer(): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey,
    publicKey,
    sign: (p) => signJob(p, privateKey, publicKey),
    signV2: (p) => signJobV2(p, privateKey, publicKey),
  };
}

let n = 0;
/** The one job-payload factory of the tests (test/support/jobs.ts): a valid v1 custom job for a minute. */
export const payload: (over?: Partial<JobPayload>) => JobPayload = jobPayload;

/** A protocol v2 exec payload (the shape every job takes inside the agent). */
export function payloadV2(over: Partial<ExecPayloadV2> = {}): ExecPayloadV2 {
  const code = over.code ?? 'print("hello")\nresult = 42\n';
  return {
    v: 2,
    jobId: `job_${Date.now()}_${n++}`,
    agentId: 'agent_1',
    requestId: 'req_1',
    target: { pid: 4242, startTime: '1000' },
    contentHash: 'c'.repeat(64),
    approvals: ['att_a', 'att_b'],
    breakGlass: false,
    issuedAt: new Date().toISOString(),
    notAfter: new Date(Date.now() + 60_000).toISOString(),
    action: 'exec',
    kind: 'custom',
    scriptId: null,
    code,
    codeHash: codeHash(code),
    params: {},
    options: {
      inline: false,
      budgetSeconds: 30,
      pickupTimeoutSeconds: 10,
      backend: 'native',
      thread: 'main',
      wake: false,
    },
    ...over,
  };
}

export type InspectPayload = Extract<JobPayloadV2, { action: 'inspect' }>;

export function inspectPayload(over: Partial<InspectPayload> = {}): InspectPayload {
  return {
    v: 2,
    jobId: `job_${Date.now()}_${n++}`,
    agentId: 'agent_1',
    requestId: 'req_1',
    target: { pid: 4242, startTime: '1000' },
    contentHash: 'd'.repeat(64),
    approvals: [],
    breakGlass: false,
    issuedAt: new Date().toISOString(),
    notAfter: new Date(Date.now() + 60_000).toISOString(),
    action: 'inspect',
    what: 'stacks',
    ...over,
  };
}

/** A minimal /proc tree with one process, for checks that read stat/status and the target's root. */
export function fakeProc(dir: string, pid: number, opts: { startTime: string; uid: number }): string {
  const p = join(dir, 'proc', String(pid));
  mkdirSync(join(p, 'root', 'tmp'), { recursive: true });
  const fields = [
    'S',
    '1',
    String(pid),
    String(pid),
    '0',
    '-1',
    '4194560',
    '0',
    '0',
    '0',
    '0',
    '0',
    '0',
    '0',
    '0',
    '20',
    '0',
    '1',
    '0',
    opts.startTime,
    '0',
  ];
  writeFileSync(join(p, 'stat'), `${pid} (python3.14 (x)) ${fields.join(' ')}\n`);
  writeFileSync(
    join(p, 'status'),
    `Name:\tpython3.14\nUid:\t${opts.uid}\t${opts.uid}\t${opts.uid}\t${opts.uid}\nGid:\t${opts.uid}\t${opts.uid}\t${opts.uid}\t${opts.uid}\n`,
  );
  return join(dir, 'proc');
}
