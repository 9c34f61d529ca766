/**
 * Pre-flight: what is known, before anyone approves, about how a request would fare on each target. One pure
 * function ({@link preflightTarget}) over facts the control plane already holds (the inventory row, the agent's
 * status and the local policy it reports with its host facts, the thread states of the last inspection), used
 * by the server at filing (ALL_TARGETS_DOOMED), by GET /api/requests/{id}/preflight and by the dashboard's
 * panels. Browser-safe: zod only.
 *
 * `doomed`: the agent or the interpreter will refuse it, whatever the approvers decide (exited, remote debugging
 * off, the host's own policy forbids it). `warn`: it may fail or wait (agent offline, every thread blocked, a
 * fact that could not be read). `ok`: nothing known stands in the way.
 */
import { z } from 'zod';

/** A user spec of the agent's `policy.allowedUsers`: a name, a uid, or "*". */
export const LocalPolicyUser = z.union([z.string().max(256), z.number().int().nonnegative()]);

/**
 * The parts of an agent's local policy (apps/agent/src/config.ts `policy`) that decide whether it refuses a
 * job, as the agent reports them with its host facts. Informative only: the agent applies its own copy.
 */
export const AgentLocalPolicy = z.object({
  allowedUsers: z.array(LocalPolicyUser).max(1024),
  allowRoot: z.boolean(),
  allowCustomCode: z.boolean(),
  maxCodeBytes: z.number().int().positive(),
  allowWake: z.boolean(),
  /** The agent's own library (id → SHA-256 of its source): with allowCustomCode false only these run. */
  library: z
    .array(z.object({ id: z.string().min(1).max(128), codeHash: z.string().regex(/^[0-9a-f]{64}$/) }))
    .max(256),
});
export type AgentLocalPolicy = z.infer<typeof AgentLocalPolicy>;

export const PreflightVerdict = z.enum(['ok', 'warn', 'doomed']);
export type PreflightVerdict = z.infer<typeof PreflightVerdict>;

export const PreflightReasonCode = z.enum([
  'PROCESS_EXITED',
  'NO_INVENTORY',
  'THREAD_GONE',
  'REMOTE_DEBUG_DISABLED',
  'REMOTE_DEBUG_UNKNOWN',
  'AGENT_REVOKED',
  'AGENT_OFFLINE',
  'AGENT_POLICY_UNKNOWN',
  'AGENT_POLICY_CUSTOM_CODE',
  'AGENT_POLICY_SCRIPT',
  'AGENT_POLICY_CODE_SIZE',
  'AGENT_POLICY_WAKE',
  'AGENT_POLICY_ROOT',
  'AGENT_POLICY_USER',
  'THREADS_BLOCKED',
  'THREADS_UNINTERRUPTIBLE',
]);
export type PreflightReasonCode = z.infer<typeof PreflightReasonCode>;

export const PreflightReason = z.object({
  code: PreflightReasonCode,
  level: PreflightVerdict.exclude(['ok']),
  message: z.string(),
});
export type PreflightReason = z.infer<typeof PreflightReason>;

/** A thread's run state as the last inspection saw it (protocol/inspect ThreadRunState, reduced). */
export const PreflightThreadState = z.object({
  tid: z.number().int().nonnegative(),
  name: z.string().nullable(),
  status: z.enum(['running', 'blocked', 'stopped', 'exited', 'unknown']),
  syscall: z.string().nullable(),
  uninterruptible: z.boolean(),
});
export type PreflightThreadState = z.infer<typeof PreflightThreadState>;

/** What is known about one target process (null fields: not in the inventory / unknown agent). */
export interface PreflightFacts {
  process: {
    uid: number;
    user: string | null;
    remoteDebugEnabled: boolean | null;
    threads: readonly { tid: number }[];
  } | null;
  agent: {
    revoked: boolean;
    online: boolean;
    /** null: an agent too old to report it. */
    localPolicy: AgentLocalPolicy | null;
  } | null;
  /** The agent has reported an inventory (false: it never did, so a missing process says nothing). */
  inventoryKnown?: boolean | undefined;
  /** The explicit target's thread (`tid`), if it named one. */
  tid?: number | undefined;
  /** Thread states from the last stacks inspection of this very process, when there is a recent one. */
  threadStates?: { at: string; threads: readonly PreflightThreadState[] } | null | undefined;
}

/** What the request would run (the code's hash and size as the agent will compute them). */
export interface PreflightContent {
  kind: 'library' | 'custom';
  scriptId: string | null;
  codeHash: string;
  codeBytes: number;
  wake: boolean;
}

export interface PreflightResult {
  verdict: PreflightVerdict;
  reasons: PreflightReason[];
}

const worst = (reasons: readonly PreflightReason[]): PreflightVerdict =>
  reasons.some((r) => r.level === 'doomed') ? 'doomed' : reasons.length > 0 ? 'warn' : 'ok';

function userAllowed(allowed: readonly (string | number)[], uid: number, user: string | null): boolean {
  return allowed.some(
    (u) =>
      u === '*' ||
      u === uid ||
      (typeof u === 'string' && user !== null && u === user) ||
      (typeof u === 'string' && /^\d+$/.test(u) && Number(u) === uid),
  );
}

/** The agent's local policy against this content and process, in the order the agent checks them. */
function policyReasons(
  p: AgentLocalPolicy,
  content: PreflightContent,
  proc: NonNullable<PreflightFacts['process']>,
): PreflightReason[] {
  const out: PreflightReason[] = [];
  const doomed = (code: PreflightReasonCode, message: string) => out.push({ code, level: 'doomed', message });
  if (content.codeBytes > p.maxCodeBytes)
    doomed(
      'AGENT_POLICY_CODE_SIZE',
      `the code is ${content.codeBytes} bytes; this host's agent allows at most ${p.maxCodeBytes} (policy.maxCodeBytes)`,
    );
  if (content.wake && !p.allowWake)
    doomed(
      'AGENT_POLICY_WAKE',
      "the request asks to wake a blocked target (--wake), which this host's agent does not allow (policy.allowWake = false)",
    );
  if (!p.allowCustomCode) {
    if (content.kind !== 'library' || !content.scriptId)
      doomed(
        'AGENT_POLICY_CUSTOM_CODE',
        "this host's agent runs only its own library scripts, no custom code (policy.allowCustomCode = false)",
      );
    else {
      const own = p.library.find((s) => s.id === content.scriptId);
      if (!own)
        doomed(
          'AGENT_POLICY_SCRIPT',
          `library script "${content.scriptId}" is not in this host's agent library, and the agent runs only its own (policy.allowCustomCode = false)`,
        );
      else if (own.codeHash !== content.codeHash)
        doomed(
          'AGENT_POLICY_SCRIPT',
          `this host's agent has another version of "${content.scriptId}" and runs only its own copy, byte for byte (policy.allowCustomCode = false): upgrade the agent`,
        );
    }
  }
  if (proc.uid === 0 && !p.allowRoot)
    doomed(
      'AGENT_POLICY_ROOT',
      "the process runs as root; this host's agent refuses root targets (policy.allowRoot = false)",
    );
  else if (!userAllowed(p.allowedUsers, proc.uid, proc.user))
    doomed(
      'AGENT_POLICY_USER',
      `processes of user ${proc.user ?? '?'} (uid ${proc.uid}) may not be targeted on this host (policy.allowedUsers = ${JSON.stringify(p.allowedUsers)})`,
    );
  return out;
}

function threadReasons(
  states: NonNullable<PreflightFacts['threadStates']>,
  content: PreflightContent,
  policy: AgentLocalPolicy | null,
  tid: number | undefined,
): PreflightReason[] {
  const threads = tid === undefined ? states.threads : states.threads.filter((t) => t.tid === tid);
  if (threads.length === 0 || !threads.every((t) => t.status === 'blocked')) return [];
  const calls = [...new Set(threads.map((t) => t.syscall ?? 'an unknown call'))].slice(0, 3).join(', ');
  const seen = `at ${states.at}`;
  const who =
    tid !== undefined
      ? `thread ${tid} was`
      : threads.length === 1
        ? 'its only thread was'
        : `all ${threads.length} threads were`;
  if (threads.every((t) => t.uninterruptible))
    return [
      {
        code: 'THREADS_UNINTERRUPTIBLE',
        level: 'warn',
        message: `${who} in uninterruptible sleep (${calls}) ${seen}: the code runs only when one returns to Python; --wake cannot interrupt such a wait`,
      },
    ];
  const wake = content.wake
    ? policy && !policy.allowWake
      ? "--wake is asked, but this host's agent does not allow it"
      : '--wake is asked: the engine will interrupt one blocked call (a C extension may not retry it)'
    : `with --wake the engine would interrupt one blocked call so a thread picks the run up${policy && !policy.allowWake ? " (this host's agent does not allow it)" : ''}`;
  return [
    {
      code: 'THREADS_BLOCKED',
      level: 'warn',
      message: `${who} blocked in C (${calls}) ${seen}: the code runs only when one returns to Python, else the pickup times out; ${wake}`,
    },
  ];
}

/** The pre-flight verdict of one target, with every reason found (the worst decides). */
export function preflightTarget(facts: PreflightFacts, content: PreflightContent): PreflightResult {
  const reasons: PreflightReason[] = [];
  const { process: proc, agent } = facts;
  if (!agent || agent.revoked)
    reasons.push({
      code: 'AGENT_REVOKED',
      level: 'doomed',
      message: agent ? "the target's agent is revoked" : "the target's agent is unknown",
    });
  if (!proc) {
    if (agent && facts.inventoryKnown === false)
      reasons.push({
        code: 'NO_INVENTORY',
        level: 'warn',
        message: "the target's agent has not reported its processes yet: nothing is known of this one",
      });
    else
      reasons.push({
        code: 'PROCESS_EXITED',
        level: 'doomed',
        message:
          'the process is not in its host inventory: it exited (or its pid was reused by another process)',
      });
    return { verdict: worst(reasons), reasons };
  }
  if (facts.tid !== undefined && !proc.threads.some((t) => t.tid === facts.tid))
    reasons.push({
      code: 'THREAD_GONE',
      level: 'doomed',
      message: `thread ${facts.tid} is not among the process's threads any more`,
    });
  if (proc.remoteDebugEnabled === false)
    reasons.push({
      code: 'REMOTE_DEBUG_DISABLED',
      level: 'doomed',
      message:
        'the process disabled remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug): the interpreter refuses remote code',
    });
  else if (proc.remoteDebugEnabled === null)
    reasons.push({
      code: 'REMOTE_DEBUG_UNKNOWN',
      level: 'warn',
      message: 'whether the process allows remote debugging could not be read',
    });
  if (agent && !agent.revoked) {
    if (!agent.online)
      reasons.push({
        code: 'AGENT_OFFLINE',
        level: 'warn',
        message: "the target's agent is offline: the execution waits for it to reconnect",
      });
    if (agent.localPolicy) reasons.push(...policyReasons(agent.localPolicy, content, proc));
    else
      reasons.push({
        code: 'AGENT_POLICY_UNKNOWN',
        level: 'warn',
        message: 'the agent does not report its local policy (an older agent): it may still refuse',
      });
  }
  if (facts.threadStates)
    reasons.push(...threadReasons(facts.threadStates, content, agent?.localPolicy ?? null, facts.tid));
  return { verdict: worst(reasons), reasons };
}

/** One target of a request's pre-flight, as the API and the dashboard show it. */
export const PreflightTargetRow = z.object({
  agentId: z.string(),
  hostname: z.string().nullable(),
  pid: z.number().int(),
  startTime: z.string(),
  tid: z.number().int().nullable(),
  /** From the inventory (null when the process is not in it). */
  user: z.string().nullable(),
  uid: z.number().int().nullable(),
  exe: z.string().nullable(),
  cmdline: z.array(z.string()).nullable(),
  inContainer: z.boolean().nullable(),
  container: z.string().nullable(),
  /** `namespace/pod · container` when the agent knows the pod. */
  pod: z.string().nullable(),
  verdict: PreflightVerdict,
  reasons: z.array(PreflightReason),
});
export type PreflightTargetRow = z.infer<typeof PreflightTargetRow>;

/** A request's (or a draft's) pre-flight: every target evaluated now (a selector: what it matches now). */
export const PreflightReport = z.object({
  evaluatedAt: z.string(),
  /** The selector's matches beyond `targets` (only the first MAX_PREFLIGHT_TARGETS are evaluated). */
  truncated: z.number().int().nonnegative(),
  counts: z.object({ ok: z.number().int(), warn: z.number().int(), doomed: z.number().int() }),
  /** Every evaluated target is doomed (a request like this is refused at filing: ALL_TARGETS_DOOMED). */
  allDoomed: z.boolean(),
  targets: z.array(PreflightTargetRow),
});
export type PreflightReport = z.infer<typeof PreflightReport>;

/** Targets a pre-flight evaluates (an explicit request has at most 1,000; a selector is cut here). */
export const MAX_PREFLIGHT_TARGETS = 1000;

export function countVerdicts(rows: readonly { verdict: PreflightVerdict }[]): PreflightReport['counts'] {
  const counts = { ok: 0, warn: 0, doomed: 0 };
  for (const r of rows) counts[r.verdict]++;
  return counts;
}

/** "doomed", "may fail", "ok": the verdict in words for badges. */
export function verdictLabel(v: PreflightVerdict): string {
  return v === 'doomed' ? 'doomed' : v === 'warn' ? 'may fail' : 'ok';
}
