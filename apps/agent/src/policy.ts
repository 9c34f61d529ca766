/**
 * The host owner's local policy, applied after the control plane's own policy: the last word on this host,
 * which a compromised or misconfigured control plane cannot override.
 */
import type { JobPayload } from '@pyreach/protocol/job';
import { codeHash } from '@pyreach/protocol/job';
import { checkScriptParams, getScript } from '@pyreach/scripts';
import type { PolicyConfig } from './config';

export type PolicyRefusal = {
  code: 'POLICY_USER_NOT_ALLOWED' | 'POLICY_ROOT_TARGET' | 'POLICY_CUSTOM_CODE' | 'POLICY_CODE_TOO_LARGE';
  message: string;
};

export interface PolicyTarget {
  /** Real, effective, saved, filesystem uid. */
  uids: readonly number[];
  user: string | null;
}

export function checkPolicy(
  job: JobPayload,
  target: PolicyTarget,
  policy: PolicyConfig,
): PolicyRefusal | null {
  const size = Buffer.byteLength(job.code, 'utf8');
  if (size > policy.maxCodeBytes) {
    return {
      code: 'POLICY_CODE_TOO_LARGE',
      message: `code is ${size} bytes; this host's policy allows at most ${policy.maxCodeBytes} (policy.maxCodeBytes)`,
    };
  }
  if (!policy.allowCustomCode) {
    if (job.kind !== 'library' || !job.scriptId) {
      return {
        code: 'POLICY_CUSTOM_CODE',
        message:
          'custom code is not allowed on this host, only built-in library scripts (policy.allowCustomCode = false)',
      };
    }
    const script = getScript(job.scriptId);
    if (!script) {
      return {
        code: 'POLICY_CUSTOM_CODE',
        message: `library script "${job.scriptId}" is not in this agent's library; only its own library scripts may run here (policy.allowCustomCode = false)`,
      };
    }
    // The code travels in the job: "library only" means it must be this agent's copy, byte for byte.
    if (codeHash(script.source) !== job.codeHash) {
      return {
        code: 'POLICY_CUSTOM_CODE',
        message: `code of "${job.scriptId}" differs from this agent's library copy (version ${script.version}); only unmodified library scripts may run here (policy.allowCustomCode = false)`,
      };
    }
    const params = checkScriptParams(job.scriptId, job.params);
    if (!params.ok)
      return { code: 'POLICY_CUSTOM_CODE', message: `library script parameters rejected: ${params.message}` };
  }
  const uid = target.uids[1] ?? target.uids[0] ?? -1;
  if (target.uids.some((u) => u === 0) && !policy.allowRoot) {
    return {
      code: 'POLICY_ROOT_TARGET',
      message: `process ${target.user ?? 'root'} (uid ${target.uids.join('/')}) runs as root; this host's policy refuses root targets (policy.allowRoot = false)`,
    };
  }
  const allowed = policy.allowedUsers.some(
    (u) =>
      u === '*' ||
      u === uid ||
      (typeof u === 'string' && target.user !== null && u === target.user) ||
      (typeof u === 'string' && /^\d+$/.test(u) && Number(u) === uid),
  );
  if (!allowed) {
    return {
      code: 'POLICY_USER_NOT_ALLOWED',
      message: `processes of user ${target.user ?? '?'} (uid ${uid}) may not be targeted on this host (policy.allowedUsers = ${JSON.stringify(policy.allowedUsers)})`,
    };
  }
  return null;
}
