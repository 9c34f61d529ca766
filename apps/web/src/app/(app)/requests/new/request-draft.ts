/**
 * The new-request form's model: what a person has typed so far (a react-hook-form value), what is still
 * wrong with it, and the API body it becomes. Pure, so the form components only render and bind.
 */
import {
  PodMatch,
  type CreateRequest,
  type RequestDetail,
  type ProcessMatch,
  type ScriptSummary,
  type TargetsInput,
} from '@pyreach/protocol/api';
import { JsonObject } from '@pyreach/protocol/common';
import { retryable } from '@pyreach/protocol/results';
import { validateParams, type ParamValues } from '../../../../components/schema-form';
import { parseLabels, type LabelsParse } from '../../../../lib/client/labels';

export type TargetMode = 'processes' | 'selector';
export type CodeMode = 'library' | 'custom';

export interface RequestDraft {
  targetMode: TargetMode;
  /** Keys (processKey) of the chosen processes. */
  selected: string[];
  /**
   * A thread to run on (its native tid in the target), picked from the process's live stacks: applies while
   * exactly one process is chosen; otherwise the engine picks the thread.
   */
  tid: number | null;
  selector: {
    labels: string;
    cmdlineContains: string;
    user: string;
    exeContains: string;
    /** Pod terms: a namespace, `key=value` pod labels (all must match), a container, `Kind/name` or `name`. */
    namespace: string;
    podLabels: string;
    container: string;
    workload: string;
  };
  codeMode: CodeMode;
  scriptId: string;
  params: ParamValues;
  custom: string;
  reason: string;
  concurrency: number;
  maxFailures: number;
  budgetSeconds: number;
  pickupTimeoutSeconds: number;
}

export const CUSTOM_TEMPLATE = `# Runs inside the target process at its next safe point.
# \`params\` holds the request's parameters; print() output and \`result\` come back.
import sys

result = {"version": sys.version, "modules": len(sys.modules)}
print("hello from", sys.argv[0] if sys.argv else "?")
`;

export function emptyDraft(init: {
  targets?: string[];
  scriptId?: string;
  tid?: number | null;
}): RequestDraft {
  return {
    targetMode: 'processes',
    selected: init.targets ?? [],
    tid: init.tid ?? null,
    selector: {
      labels: '',
      cmdlineContains: '',
      user: '',
      exeContains: '',
      namespace: '',
      podLabels: '',
      container: '',
      workload: '',
    },
    codeMode: 'library',
    scriptId: init.scriptId ?? '',
    params: {},
    custom: CUSTOM_TEMPLATE,
    reason: '',
    concurrency: 1,
    maxFailures: 1,
    budgetSeconds: 30,
    pickupTimeoutSeconds: 10,
  };
}

export const processKey = (p: { agentId: string; pid: number; startTime: string }) =>
  `${p.agentId}:${p.pid}:${p.startTime}`;

/** The pod terms as the API takes them (null when none is filled in), checked with the API's own schema. */
export function podOf(sel: RequestDraft['selector']): { pod: PodMatch | null; error: string | null } {
  const namespace = sel.namespace.trim();
  const container = sel.container.trim();
  const workload = sel.workload.trim();
  const labels = parseLabels(sel.podLabels);
  if (labels.error) return { pod: null, error: `Pod labels: ${labels.error}` };
  const raw: Record<string, unknown> = {};
  if (namespace) raw.namespace = namespace;
  if (Object.keys(labels.labels).length) raw.labels = labels.labels;
  if (container) raw.container = container;
  if (workload) {
    const slash = workload.indexOf('/');
    raw.workload =
      slash < 0 ? { name: workload } : { kind: workload.slice(0, slash), name: workload.slice(slash + 1) };
  }
  if (Object.keys(raw).length === 0) return { pod: null, error: null };
  const checked = PodMatch.safeParse(raw);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const field = {
      namespace: 'Namespace',
      labels: 'Pod labels',
      container: 'Container',
      workload: 'Workload',
    }[String(issue?.path[0] ?? '')];
    return { pod: null, error: `${field ?? 'Pod'}: ${issue?.message ?? 'invalid'}` };
  }
  return { pod: checked.data, error: null };
}

/** The selector as the API takes it (empty fields left out), with the labels' parse and the pod terms' error. */
export function selectorOf(draft: Pick<RequestDraft, 'selector'>): {
  labels: LabelsParse;
  process: ProcessMatch;
  podError: string | null;
} {
  const process: ProcessMatch = {};
  for (const k of ['cmdlineContains', 'user', 'exeContains'] as const) {
    const v = draft.selector[k].trim();
    if (v) process[k] = v;
  }
  const { pod, error } = podOf(draft.selector);
  if (pod) process.pod = pod;
  return { labels: parseLabels(draft.selector.labels), process, podError: error };
}

/** A processKey read back (`agentId:pid:startTime`; ids never hold a colon), or null when it is not one. */
export function parseProcessKey(key: string): { agentId: string; pid: number; startTime: string } | null {
  const m = /^([A-Za-z0-9_-]{1,64}):([0-9]{1,10}):(.+)$/.exec(key);
  return m ? { agentId: m[1]!, pid: Number(m[2]), startTime: m[3]! } : null;
}

/**
 * The targets the draft names, or null when it names none yet (or the selector does not parse). The chosen
 * processes are their keys: the picker pages the fleet on the server, so a choice need not be on the page.
 */
export function targetsOf(draft: RequestDraft): TargetsInput | null {
  if (draft.targetMode === 'processes') {
    const onThread = draft.selected.length === 1 && draft.tid !== null ? { tid: draft.tid } : {};
    const picked = [...new Set(draft.selected)]
      .map(parseProcessKey)
      .filter((k) => k !== null)
      .map((k) => ({ ...k, ...onThread }));
    return picked.length ? { type: 'processes', processes: picked } : null;
  }
  const sel = selectorOf(draft);
  return sel.labels.error || sel.podError
    ? null
    : { type: 'selector', labels: sel.labels.labels, process: sel.process };
}

export interface DraftErrors {
  targets: string | null;
  code: string | null;
  reason: string | null;
  params: Record<string, string>;
}

export function draftErrors(
  draft: RequestDraft,
  targets: TargetsInput | null,
  script: ScriptSummary | undefined,
): DraftErrors {
  // A script's parameters count only when that script is what runs (custom code has none to fix).
  const params =
    draft.codeMode === 'library' && script ? validateParams(script.paramsSchema, draft.params) : {};
  return {
    targets: targets
      ? null
      : draft.targetMode === 'processes'
        ? 'Pick at least one process'
        : (selectorOf(draft).labels.error ?? selectorOf(draft).podError ?? 'Enter a selector'),
    code:
      draft.codeMode === 'library'
        ? !script
          ? 'Choose a script'
          : Object.keys(params).length
            ? 'Fix the parameters'
            : null
        : draft.custom.trim()
          ? null
          : 'Write some code',
    reason: draft.reason.trim().length < 3 ? 'Say why this needs to run (at least 3 characters)' : null,
    params,
  };
}

export const hasErrors = (e: DraftErrors) =>
  Boolean(e.targets || e.code || e.reason || Object.keys(e.params).length);

/** The POST /api/requests body for a draft without errors. */
export function toCreateRequest(
  draft: RequestDraft,
  targets: TargetsInput,
  script: ScriptSummary | undefined,
): CreateRequest {
  return {
    kind: draft.codeMode,
    ...(draft.codeMode === 'library' && script
      ? { scriptId: script.id, code: script.source, params: JsonObject.parse(draft.params) }
      : { code: draft.custom, params: {} }),
    targets,
    reason: draft.reason.trim(),
    rollout: { concurrency: draft.concurrency, maxFailures: draft.maxFailures },
    options: {
      inline: script?.inline ?? false,
      budgetSeconds: draft.budgetSeconds,
      pickupTimeoutSeconds: draft.pickupTimeoutSeconds,
      backend: 'native',
    },
  };
}

/**
 * "Retry the failed ones": the draft of a NEW request (its own approval) with `r`'s code, parameters, options and
 * rollout, and as targets only its executions that failed, timed out, were refused, lost or expired.
 */
export function retryDraft(r: RequestDetail): RequestDraft {
  const base = emptyDraft({
    targets: retryable(r.executions).map(processKey),
    scriptId: r.kind === 'library' ? (r.scriptId ?? '') : '',
  });
  return {
    ...base,
    codeMode: r.kind === 'library' ? 'library' : 'custom',
    params: r.kind === 'library' ? (r.params as ParamValues) : {},
    custom: r.kind === 'custom' ? r.code : base.custom,
    reason: `Retry of the failed targets of request ${r.id}: ${r.reason}`.slice(0, 2000),
    concurrency: r.rollout.concurrency,
    maxFailures: r.rollout.maxFailures,
    budgetSeconds: r.options.budgetSeconds ?? base.budgetSeconds,
    pickupTimeoutSeconds: r.options.pickupTimeoutSeconds ?? base.pickupTimeoutSeconds,
  };
}
