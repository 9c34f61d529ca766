/**
 * Everything a job must pass before it runs, in order. The first three steps decide whether the envelope can
 * be trusted at all; only a trusted, fresh job id is recorded in the replay guard and gets a durable refusal
 * event (an untrusted id could collide with a real job's event stream on the control plane).
 */
import type { KeyObject } from 'node:crypto';
import type { JobRefusalCode } from '@pyreach/protocol/agent';
import { verifyJob, type JobPayload } from '@pyreach/protocol/job';
import type { PolicyConfig } from './config';
import { checkPolicy } from './policy';
import type { TargetFacts } from './procinfo';

export type CheckOutcome =
  | { ok: true; payload: JobPayload; target: TargetFacts; user: string | null }
  | {
      ok: false;
      code: JobRefusalCode;
      message: string;
      /** Present once the signature verified. */
      payload: JobPayload | null;
      /** The job id may be used for a durable `refused` event and the replay guard. */
      trusted: boolean;
    };

export interface CheckContext {
  pinnedKey: KeyObject;
  agentId: string;
  now: number;
  clockSkewMs: number;
  policy: PolicyConfig;
  seen: (jobId: string) => boolean;
  readTarget: (pid: number) => TargetFacts | null;
  userName: (uid: number, pid: number) => string | null;
}

/** Best-effort job id of an envelope that did not verify, for logs and the local audit only. */
export function untrustedJobId(input: unknown): string | null {
  const id = (input as { payload?: { jobId?: unknown } } | null)?.payload?.jobId;
  return typeof id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null;
}

export function checkJob(input: unknown, ctx: CheckContext): CheckOutcome {
  const v = verifyJob(input, ctx.pinnedKey);
  if (!v.ok) return { ok: false, code: v.code, message: v.message, payload: null, trusted: false };
  const job = v.payload;
  if (job.agentId !== ctx.agentId) {
    return {
      ok: false,
      code: 'WRONG_AGENT',
      message: `job is addressed to agent ${job.agentId}, this is ${ctx.agentId}`,
      payload: job,
      trusted: false,
    };
  }
  if (ctx.seen(job.jobId)) {
    return {
      ok: false,
      code: 'REPLAYED',
      message: `job ${job.jobId} was already received by this agent; a job runs at most once`,
      payload: job,
      trusted: false,
    };
  }
  const notAfter = Date.parse(job.notAfter);
  if (!Number.isFinite(notAfter)) {
    return {
      ok: false,
      code: 'MALFORMED',
      message: `notAfter "${job.notAfter}" is not a timestamp`,
      payload: job,
      trusted: true,
    };
  }
  if (ctx.now > notAfter + ctx.clockSkewMs) {
    return {
      ok: false,
      code: 'EXPIRED',
      message: `job expired at ${job.notAfter} (agent clock ${new Date(ctx.now).toISOString()}, allowed skew ${Math.round(ctx.clockSkewMs / 1000)}s)`,
      payload: job,
      trusted: true,
    };
  }
  const target = ctx.readTarget(job.target.pid);
  if (!target) {
    return {
      ok: false,
      code: 'TARGET_CHANGED',
      message: `target process ${job.target.pid} no longer exists`,
      payload: job,
      trusted: true,
    };
  }
  if (target.startTime !== job.target.startTime) {
    return {
      ok: false,
      code: 'TARGET_CHANGED',
      message: `pid ${job.target.pid} now belongs to another process (start time ${target.startTime}, job expected ${job.target.startTime}): the target restarted or the pid was reused`,
      payload: job,
      trusted: true,
    };
  }
  const user = ctx.userName(target.uids[1], target.pid);
  const refusal = checkPolicy(job, { uids: target.uids, user }, ctx.policy);
  if (refusal) return { ok: false, ...refusal, payload: job, trusted: true };
  return { ok: true, payload: job, target, user };
}
