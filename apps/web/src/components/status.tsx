import { Badge } from './ui/badge';

type Variant = 'default' | 'secondary' | 'outline' | 'success' | 'warning' | 'destructive' | 'muted';

const EXEC: Record<string, Variant> = {
  queued: 'muted',
  sent: 'secondary',
  staged: 'secondary',
  picked_up: 'default',
  succeeded: 'success',
  failed: 'destructive',
  pickup_timeout: 'warning',
  target_gone: 'warning',
  refused: 'destructive',
  agent_lost: 'warning',
  expired: 'muted',
  cancelled: 'muted',
};

const REQ: Record<string, Variant> = {
  pending: 'warning',
  approved: 'default',
  dispatching: 'default',
  running: 'default',
  succeeded: 'success',
  completed: 'success',
  partially_failed: 'warning',
  failed: 'destructive',
  rejected: 'destructive',
  cancelled: 'muted',
  expired: 'muted',
};

export function ExecutionBadge({ state }: { state: string }) {
  return (
    <Badge variant={EXEC[state] ?? 'outline'} data-testid="execution-state">
      {state.replaceAll('_', ' ')}
    </Badge>
  );
}

export function RequestBadge({ state }: { state: string }) {
  return (
    <Badge variant={REQ[state] ?? 'outline'} data-testid="request-state">
      {state.replaceAll('_', ' ')}
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
