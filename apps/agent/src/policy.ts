/**
 * The host owner's local policy, applied after the control plane's own policy: the last word on this host,
 * which a compromised or misconfigured control plane cannot override. Running code (`exec`) and reading memory
 * (`inspect`) have their own sections; the second defaults to the first for users and root.
 */
import type { ExecPayloadV2 } from '@pyreach/protocol/job';
import { codeHash } from '@pyreach/protocol/job';
import type { AgentLocalPolicy } from '@pyreach/protocol/preflight';
import { SCRIPTS, checkScriptParams, getScript } from '@pyreach/scripts';
import type { PolicyConfig } from './config';

export type PolicyRefusal = {
  code:
    | 'POLICY_USER_NOT_ALLOWED'
    | 'POLICY_ROOT_TARGET'
    | 'POLICY_CUSTOM_CODE'
    | 'POLICY_CODE_TOO_LARGE'
    | 'POLICY_OPTED_OUT'
    | 'POLICY_WAKE';
  message: string;
};

export interface PolicyTarget {
  /** Real, effective, saved, filesystem uid. */
  uids: readonly number[];
  user: string | null;
}

type UserSpec = string | number;

/** Root and allowed-user checks, shared by both sections; `where` names the settings in messages. */
function checkUser(
  target: PolicyTarget,
  allowedUsers: readonly UserSpec[],
  allowRoot: boolean,
  where: { users: string; root: string; verb: string },
): PolicyRefusal | null {
  const uid = target.uids[1] ?? target.uids[0] ?? -1;
  if (target.uids.some((u) => u === 0) && !allowRoot) {
    return {
      code: 'POLICY_ROOT_TARGET',
      message: `process ${target.user ?? 'root'} (uid ${target.uids.join('/')}) runs as root; this host's policy refuses to ${where.verb} root processes (${where.root} = false)`,
    };
  }
  const allowed = allowedUsers.some(
    (u) =>
      u === '*' ||
      u === uid ||
      (typeof u === 'string' && target.user !== null && u === target.user) ||
      (typeof u === 'string' && /^\d+$/.test(u) && Number(u) === uid),
  );
  if (!allowed) {
    return {
      code: 'POLICY_USER_NOT_ALLOWED',
      message: `processes of user ${target.user ?? '?'} (uid ${uid}) may not be ${where.verb === 'target' ? 'targeted' : 'inspected'} on this host (${where.users} = ${JSON.stringify(allowedUsers)})`,
    };
  }
  return null;
}

export function checkPolicy(
  job: ExecPayloadV2,
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
  if (job.options.wake && !policy.allowWake) {
    return {
      code: 'POLICY_WAKE',
      message:
        'the job asks to wake a blocked target (options.wake: the engine interrupts a blocked system call of one of its threads with ptrace), which this host\'s policy does not allow. Nothing ran. The host owner can allow it with "policy": { "allowWake": true } in the agent\'s configuration (or PYREACH_AGENT_ALLOW_WAKE=true); or dispatch the job without wake',
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
  return checkUser(target, policy.allowedUsers, policy.allowRoot, {
    users: 'policy.allowedUsers',
    root: 'policy.allowRoot',
    verb: 'target',
  });
}

/** The users and root checks of `policy.inspect`, each falling back to the exec setting when not set. */
export function checkInspectPolicy(target: PolicyTarget, policy: PolicyConfig): PolicyRefusal | null {
  const own = policy.inspect;
  return checkUser(target, own.allowedUsers ?? policy.allowedUsers, own.allowRoot ?? policy.allowRoot, {
    users: own.allowedUsers
      ? 'policy.inspect.allowedUsers'
      : 'policy.allowedUsers (policy.inspect.allowedUsers unset)',
    root:
      own.allowRoot !== undefined
        ? 'policy.inspect.allowRoot'
        : 'policy.allowRoot (policy.inspect.allowRoot unset)',
    verb: 'inspect',
  });
}

/**
 * The opted-out rule of `policy.inspect`. `remoteDebugEnabled` is what the target's interpreter says (its
 * `remote_debug` config): false = opted out; null = could not be read, which counts as opted out unless allowed
 * (a process whose choice cannot be read is not assumed to have consented).
 */
export function checkOptedOut(
  pid: number,
  remoteDebugEnabled: boolean | null,
  policy: PolicyConfig,
): PolicyRefusal | null {
  if (remoteDebugEnabled === true || policy.inspect.allowOptedOut) return null;
  const why =
    remoteDebugEnabled === false
      ? `process ${pid} disabled remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug): it opted out of being looked into`
      : `whether process ${pid} disabled remote debugging could not be read, so it counts as opted out`;
  return {
    code: 'POLICY_OPTED_OUT',
    message: `${why}; this host's policy does not read such processes. The host owner can allow it with "policy": { "inspect": { "allowOptedOut": true } } in the agent's configuration (or PYREACH_AGENT_INSPECT_ALLOW_OPTED_OUT=true)`,
  };
}

/**
 * What this agent reports of its policy with its host facts (the control plane's pre-flight verdicts): the
 * settings `checkPolicy` refuses on, and its own library (id and source hash) for `allowCustomCode = false`.
 */
export function localPolicyOf(policy: PolicyConfig): AgentLocalPolicy {
  return {
    allowedUsers: [...policy.allowedUsers],
    allowRoot: policy.allowRoot,
    allowCustomCode: policy.allowCustomCode,
    maxCodeBytes: policy.maxCodeBytes,
    allowWake: policy.allowWake,
    library: SCRIPTS.map((s) => ({ id: s.id, codeHash: codeHash(s.source) })),
  };
}
