/** Test helper process: appends N output events to a job journal, prints each seq once it is on disk, then waits to be killed. */
import { Outbox } from '../src/outbox';

const [stateDir, jobId, count] = process.argv.slice(2);
const o = new Outbox(stateDir!);
o.open();
if (!o.record(jobId!)) {
  o.createJob({
    jobId: jobId!,
    requestId: 'r',
    receivedAt: new Date().toISOString(),
    codeHash: 'a'.repeat(64),
    kind: 'custom',
    scriptId: null,
    target: { pid: 1, startTime: '1' },
    notAfter: new Date().toISOString(),
    budgetSeconds: 1,
    pickupTimeoutSeconds: 1,
  });
}
for (let i = 0; i < Number(count); i++) {
  const ev = o.append(jobId!, { type: 'output', jobId: jobId!, chunk: `line ${i}\n` });
  process.stdout.write(`${ev.seq}\n`);
}
setInterval(() => undefined, 1000);
