/**
 * Everything a job must pass before it runs, in order. The first three steps decide whether the envelope can
 * be trusted at all; only a trusted, fresh job id is recorded in the replay guard and gets a durable refusal
 * event (an untrusted id could collide with a real job's event stream on the control plane).
 *
 * Both envelope versions take the same path: `verifyAnyJob` checks a v1 envelope (canonical form of the parsed
 * payload) or a v2 one (the exact signed bytes, then a strict parse that refuses any field this agent does not
 * know, saying to upgrade) and hands back the v2 shape, so everything after it — addressee, replay, expiry,
 * pid reuse, policy — is one code path for both versions and both actions.
 */
import type { KeyObject } from 'node:crypto';
import type { JobRefusalCode } from '@pyreach/protocol/agent';
import { verifyAnyJob, type JobPayloadV2, type JobVersion } from '@pyreach/protocol/job';
import type { PolicyConfig } from './config';
import { checkInspectPolicy, checkOptedOut, checkPolicy } from './policy';
import type { TargetFacts } from './procinfo';

export type CheckOutcome =
  | {
      ok: true;
      payload: JobPayloadV2;
      /** The envelope version that arrived (the payload is in v2's shape either way). */
      version: JobVersion;
      target: TargetFacts;
      user: string | null;
    }
  | {
      ok: false;
      code: JobRefusalCode;
      message: string;
      /** Present once the signature verified and the payload parsed. */
      payload: JobPayloadV2 | null;
      version: JobVersion | null;
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
  /**
   * What the latest discovery read about this process's `remote_debug` (null: not known). Only a known
   * `false` refuses here, in the dispatch ack; the reading child checks again from the target's memory.
   */
  remoteDebugEnabled?: (pid: number, startTime: string) => boolean | null;
}

const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Best-effort job id of an envelope that did not verify, for logs and the local audit only. */
export function untrustedJobId(input: unknown): string | null {
  const payload = (input as { payload?: unknown } | null)?.payload;
  let id: unknown = (payload as { jobId?: unknown } | null)?.jobId;
  // A v2 envelope carries its payload as the signed JSON text.
  if (typeof payload === 'string' && payload.length <= 4 * 1024 * 1024) {
    try {
      id = (JSON.parse(payload) as { jobId?: unknown } | null)?.jobId;
    } catch {
      id = undefined;
    }
  }
  return typeof id === 'string' && JOB_ID.test(id) ? id : null;
}

export function checkJob(input: unknown, ctx: CheckContext): CheckOutcome {
  const v = verifyAnyJob(input, ctx.pinnedKey);
  if (!v.ok)
    return { ok: false, code: v.code, message: v.message, payload: null, version: null, trusted: false };
  const job = v.payload;
  const version = v.version;
  const refuse = (code: JobRefusalCode, message: string, trusted = true): CheckOutcome => ({
    ok: false,
    code,
    message,
    payload: job,
    version,
    trusted,
  });
  if (job.agentId !== ctx.agentId)
    return refuse('WRONG_AGENT', `job is addressed to agent ${job.agentId}, this is ${ctx.agentId}`, false);
  if (ctx.seen(job.jobId))
    return refuse(
      'REPLAYED',
      `job ${job.jobId} was already received by this agent; a job runs at most once`,
      false,
    );
  const notAfter = Date.parse(job.notAfter);
  if (!Number.isFinite(notAfter)) return refuse('MALFORMED', `notAfter "${job.notAfter}" is not a timestamp`);
  if (ctx.now > notAfter + ctx.clockSkewMs) {
    return refuse(
      'EXPIRED',
      `job expired at ${job.notAfter} (agent clock ${new Date(ctx.now).toISOString()}, allowed skew ${Math.round(ctx.clockSkewMs / 1000)}s)`,
    );
  }
  const target = ctx.readTarget(job.target.pid);
  if (!target) return refuse('TARGET_CHANGED', `target process ${job.target.pid} no longer exists`);
  if (target.startTime !== job.target.startTime) {
    return refuse(
      'TARGET_CHANGED',
      `pid ${job.target.pid} now belongs to another process (start time ${target.startTime}, job expected ${job.target.startTime}): the target restarted or the pid was reused`,
    );
  }
  const user = ctx.userName(target.uids[1], target.pid);
  if (job.action === 'exec') {
    // Never run without an option the approval covered: wake is honoured only where the local policy allows it
    // (checkPolicy: POLICY_WAKE), never dropped.
    const refusal = checkPolicy(job, { uids: target.uids, user }, ctx.policy);
    if (refusal) return refuse(refusal.code, refusal.message);
  } else {
    const refusal =
      checkInspectPolicy({ uids: target.uids, user }, ctx.policy) ??
      (ctx.remoteDebugEnabled?.(target.pid, target.startTime) === false
        ? checkOptedOut(target.pid, false, ctx.policy)
        : null);
    if (refusal) return refuse(refusal.code, refusal.message);
  }
  return { ok: true, payload: job, version, target, user };
}
