/**
 * `process:inspect`: a person (or token) asks an agent to read one process's thread stacks or asyncio tasks from
 * outside. Nothing runs in the target, so no approval is needed by default; every inspection is audited (who,
 * which process, what) in the same transaction that signs its job. Agents older than protocol v2 cannot inspect:
 * they are refused with an "upgrade the agent" message before anything is signed.
 */
import type { InspectProcessBody } from '@pyreach/protocol/api';
import { signJobV2, type JobEnvelopeV2, type JobPayloadV2 } from '@pyreach/protocol/job';
import type { PrismaClient } from '@pyreach/db';
import { actorData, assertCan, type Actor } from './actor';
import { appendAudit } from './audit';
import type { AgentVersionOf } from './dispatch';
import { outcome, type Outcome } from './effects';
import { AppError } from './errors';
import { newId } from './ids';
import type { SigningKeyPair } from './signing';

/** How long an inspection job stays valid for its agent. */
export const INSPECT_JOB_TTL_MS = 60_000;

export interface Inspection {
  jobId: string;
  agentId: string;
  pid: number;
  what: InspectProcessBody['what'];
  envelope: JobEnvelopeV2;
}

export async function startInspection(
  db: PrismaClient,
  actor: Actor,
  body: InspectProcessBody,
  deps: { signing: Pick<SigningKeyPair, 'privateKey' | 'publicKey'>; agentVersionOf: AgentVersionOf },
  now: Date = new Date(),
): Promise<Outcome<Inspection>> {
  assertCan(actor, 'process:inspect');
  return db.$transaction(async (tx) => {
    const proc = await tx.pythonProcess.findFirst({
      where: { pid: body.pid, startTime: body.startTime, host: { agentId: body.agentId } },
    });
    if (!proc)
      throw new AppError(
        'NOT_FOUND',
        `process ${body.pid} (start ${body.startTime}) not on agent ${body.agentId}`,
        {
          userMessage:
            'process not found on that host (it may have exited): pick it again from the fleet view',
        },
      );
    if (deps.agentVersionOf(body.agentId) < 2)
      throw new AppError(
        'UNSUPPORTED_VERSION',
        `agent ${body.agentId} speaks job protocol v1: no inspection jobs`,
        {
          userMessage:
            "this host's agent is too old to inspect processes (it speaks job protocol v1): upgrade the agent",
        },
      );
    const jobId = newId('job');
    const payload: JobPayloadV2 = {
      v: 2,
      jobId,
      agentId: body.agentId,
      requestId: newId('insp'),
      target: { pid: body.pid, startTime: body.startTime },
      contentHash: '0'.repeat(64),
      approvals: [],
      breakGlass: false,
      issuedAt: now.toISOString(),
      notAfter: new Date(now.getTime() + INSPECT_JOB_TTL_MS).toISOString(),
      action: 'inspect',
      what: body.what,
    };
    const envelope = signJobV2(payload, deps.signing.privateKey, deps.signing.publicKey);
    await appendAudit(
      tx,
      {
        actor,
        action: 'process.inspect',
        subjectType: 'process',
        subjectId: proc.id,
        data: {
          jobId,
          agentId: body.agentId,
          pid: body.pid,
          startTime: body.startTime,
          what: body.what,
          ...actorData(actor),
        },
      },
      now,
    );
    return outcome({ jobId, agentId: body.agentId, pid: body.pid, what: body.what, envelope });
  });
}
