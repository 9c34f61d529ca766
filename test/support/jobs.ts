/** The one job-payload factory of the tests: a valid custom job, valid for a minute, with any field replaced. */
import { randomBytes } from 'node:crypto';
import { codeHash, type JobPayload } from '@pyreach/protocol/job';

export function jobPayload(over: Partial<JobPayload> = {}): JobPayload {
  const code = over.code ?? 'print("hello")\nresult = 42\n';
  return {
    v: 1,
    jobId: `job_${randomBytes(8).toString('hex')}`,
    agentId: 'agent_1',
    requestId: `req_${randomBytes(4).toString('hex')}`,
    target: { pid: 4242, startTime: '1000' },
    kind: 'custom',
    scriptId: null,
    code,
    codeHash: codeHash(code),
    params: {},
    options: { inline: false, budgetSeconds: 30, pickupTimeoutSeconds: 10, backend: 'native' },
    issuedAt: new Date().toISOString(),
    notAfter: new Date(Date.now() + 60_000).toISOString(),
    ...over,
  };
}
