import { canonicalJson, sha256Hex } from '@pyreach/protocol/canonical';
import type { InjectionRequest } from '@pyreach/db';
import { optionsOf, paramsOf, rolloutOf, targetsOf } from './rows';

/** Everything that changes what runs, where or how: what approvers approve and what the hash covers. */
export interface RequestContent {
  kind: string;
  scriptId: string | null;
  code: string;
  params: unknown;
  targets: unknown;
  options: unknown;
  rollout: unknown;
  /** Break-glass: the emergency's reason is part of what was filed (absent or null for every other request). */
  emergencyReason?: string | null;
}

/**
 * SHA-256 hex of the canonical JSON of everything that changes what runs, where or how: kind, script, code,
 * params, targets (or selector), every job option (the whole parsed object, so a new option is covered the day
 * it is added) and the rollout. Any change is a new hash, and votes count only on the hash they were cast on.
 * Dispatch recomputes it from the row before it signs, so a row edited behind the service's back is refused.
 */
export function contentHashOf(v: RequestContent): string {
  return sha256Hex(
    canonicalJson({
      v: 2,
      kind: v.kind,
      scriptId: v.scriptId,
      code: v.code,
      params: v.params,
      targets: v.targets,
      options: v.options,
      rollout: v.rollout,
      // Only emergencies carry it, so every other request's hash is what it always was.
      ...(v.emergencyReason ? { emergency: { reason: v.emergencyReason } } : {}),
    }),
  );
}

/**
 * The hash of a stored request, recomputed from its row as dispatch, the vote count and break-glass check it
 * (each column parsed with its shape, so a row edited behind the service's back gives another hash).
 */
export function contentHashOfRow(
  req: Pick<
    InjectionRequest,
    'kind' | 'scriptId' | 'code' | 'params' | 'targets' | 'options' | 'rollout' | 'emergencyReason'
  >,
): string {
  return contentHashOf({
    kind: req.kind,
    scriptId: req.scriptId,
    code: req.code,
    params: paramsOf(req.params),
    targets: targetsOf(req.targets),
    options: optionsOf(req.options),
    rollout: rolloutOf(req.rollout),
    emergencyReason: req.emergencyReason,
  });
}
