import {
  AFTER_REVIEW,
  EXECUTION,
  INSPECTION,
  REQUEST,
  type AfterReviewState,
  type ExecutionState,
  type InspectionState,
  type RequestState,
  type StateTone,
} from '@pyreach/protocol/states';
import { Badge } from './ui/badge';

type Variant = 'default' | 'secondary' | 'outline' | 'success' | 'warning' | 'destructive' | 'muted';

/** Badge colour per tone of the state table (states.ts): a new state needs no edit here. */
const TONE: Record<StateTone, Variant> = {
  waiting: 'warning',
  active: 'default',
  success: 'success',
  failure: 'destructive',
  warning: 'warning',
  neutral: 'muted',
};

export function ExecutionBadge({ state }: { state: ExecutionState }) {
  return (
    <Badge variant={TONE[EXECUTION[state].tone]} data-testid="execution-state">
      {EXECUTION[state].label}
    </Badge>
  );
}

export function RequestBadge({ state }: { state: RequestState }) {
  return (
    <Badge variant={TONE[REQUEST[state].tone]} data-testid="request-state">
      {REQUEST[state].label}
    </Badge>
  );
}

/**
 * What a request rests on that nobody else checked: a governance change no second admin confirmed (its policy, or
 * an approver's role). Shown wherever the request is, beside its state.
 */
export function RequestMarks({
  request,
}: {
  request: { unconfirmedGovernance?: boolean; emergency?: boolean; afterReview?: AfterReviewState | null };
}) {
  return (
    <>
      {request.emergency ? (
        <Badge
          variant="destructive"
          data-testid="break-glass-badge"
          title="Filed as an emergency under a break-glass grant: it ran without approval"
        >
          break-glass
        </Badge>
      ) : null}
      {request.afterReview ? (
        <Badge variant={TONE[AFTER_REVIEW[request.afterReview].tone]} data-testid="after-review-state">
          {AFTER_REVIEW[request.afterReview].label}
        </Badge>
      ) : null}
      {request.unconfirmedGovernance ? (
        <Badge
          variant="warning"
          data-testid="unconfirmed-governance"
          title="Filed under a policy, or approved by someone whose role, that a second admin has not confirmed"
        >
          unconfirmed governance
        </Badge>
      ) : null}
    </>
  );
}

export function InspectionBadge({ state }: { state: InspectionState }) {
  return (
    <Badge variant={TONE[INSPECTION[state].tone]} data-testid="inspection-state">
      {INSPECTION[state].label}
    </Badge>
  );
}

export function OnlineBadge({ status, revoked }: { status: string; revoked?: boolean }) {
  if (revoked) return <Badge variant="destructive">revoked</Badge>;
  return status === 'online' ? (
    <Badge variant="success">
      <span aria-hidden="true" className="size-1.5 rounded-full bg-current" /> online
    </Badge>
  ) : (
    <Badge variant="muted">
      <span aria-hidden="true" className="size-1.5 rounded-full bg-current" /> offline
    </Badge>
  );
}

export function RiskBadge({ risk }: { risk: string }) {
  const v: Variant = risk === 'high' ? 'destructive' : risk === 'medium' ? 'warning' : 'secondary';
  return <Badge variant={v}>risk: {risk}</Badge>;
}

export function LabelList({ labels }: { labels: Record<string, string> | null | undefined }) {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return <span className="text-xs text-muted-foreground">no labels</span>;
  return (
    <span className="flex flex-wrap gap-1">
      {entries.map(([k, v]) => (
        <Badge key={k} variant="outline" className="font-mono font-normal">
          {k}={v}
        </Badge>
      ))}
    </span>
  );
}

/** A namespace declaration: which namespaces carry which policy labels (`payments → env=prod`). */
export function NamespaceLabelList({
  namespaceLabels,
}: {
  namespaceLabels: Record<string, Record<string, string>> | null | undefined;
}) {
  const entries = Object.entries(namespaceLabels ?? {});
  if (entries.length === 0) return null;
  return (
    <span className="flex flex-wrap gap-1" data-testid="namespace-labels">
      {entries.map(([ns, labels]) => (
        <Badge key={ns} variant="outline" className="font-mono font-normal">
          ns/{ns} →{' '}
          {Object.entries(labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(',')}
        </Badge>
      ))}
    </span>
  );
}

/** A process's `sys.remote_exec` availability as the agent last saw it (unknown: why, on hover). */
export function RemoteDebugBadge({
  p,
}: {
  p: { remoteDebugEnabled: boolean | null; inspectError?: string | null };
}) {
  return p.remoteDebugEnabled === true ? (
    <Badge variant="success">on</Badge>
  ) : p.remoteDebugEnabled === false ? (
    <Badge variant="destructive">off</Badge>
  ) : (
    <Badge variant="muted" title={p.inspectError ?? undefined}>
      unknown
    </Badge>
  );
}
