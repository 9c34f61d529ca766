'use client';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { CheckCheckIcon, ExternalLinkIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { CodeAndParams, describeTargets } from '../../../components/requests/code-and-params';
import { AfterReview } from '../../../components/requests/after-review';
import { RequestPreflight } from '../../../components/requests/preflight-panel';
import { ReviewControls } from '../../../components/requests/review-controls';
import { RequestBadge, RequestMarks } from '../../../components/status';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Card, CardContent, CardHeader } from '../../../components/ui/card';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { useCall, useHostnames, useNames } from '../../../lib/client/api';
import { canDo, useUser } from '../../../lib/client/session';
import { useLiveState, useUiEvent } from '../../../lib/client/socket';
import { queueAction } from '../../../lib/client/request-push';
import { mayReview } from '@pyreach/protocol/api';
import { formatTime, relativeTime } from '../../../lib/client/utils';

export function ApprovalQueue() {
  const user = useUser();
  const { data, error, loading, reload } = useCall('listRequests', {
    query: { state: 'pending', limit: 100 },
  });
  const scripts = useCall('listScripts', {});
  const policies = useCall('listPolicies', {});
  const hostnames = useHostnames();
  // Pushes applied, not a reload per event: a request that left `pending` goes, progress elsewhere is nothing.
  const [gone, setGone] = useState<ReadonlySet<string>>(new Set());
  useEffect(() => setGone(new Set()), [data]);
  const requests = (data?.requests ?? []).filter((r) => !gone.has(r.id));
  useUiEvent('request:changed', (m) => {
    const action = queueAction(new Set(requests.map((r) => r.id)), m);
    if (action === 'remove') setGone((g) => new Set([...g, m.requestId]));
    else if (action === 'refetch') reload();
  });
  useReloadOnReconnect(reload);
  const names = useNames(requests.map((r) => r.requesterId));

  if (!canDo(user.role, 'request:review')) {
    return (
      <>
        <PageHeader title="Approvals" />
        <Alert variant="warning" title="Your role does not review requests">
          Approvers and admins review; you can still read every request.
        </Alert>
      </>
    );
  }

  return (
    <>
      <PageHeader
        title="Approvals"
        description="Pending requests. Read the exact code, parameters and targets before you vote."
      />
      <AfterReviewQueue />
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows rows={4} />
      ) : requests.length === 0 ? (
        <EmptyState title="Nothing waits for a review" icon={<CheckCheckIcon />}>
          New requests appear here as they are filed.
        </EmptyState>
      ) : (
        <div className="grid gap-5" data-testid="approval-queue">
          {requests.map((r) => {
            const own = r.requesterId === user.id;
            const script = scripts.data?.scripts.find((s) => s.id === r.scriptId);
            const policy = policies.data?.policies.find((p) => p.id === r.policyId);
            return (
              <Card key={r.id} data-testid="pending-request" data-request-id={r.id}>
                <CardHeader className="flex-row flex-wrap items-center gap-x-3 gap-y-1">
                  <h2 className="font-semibold">
                    {r.kind === 'library' ? (script?.title ?? r.scriptId) : 'Custom code'}
                  </h2>
                  <RequestBadge state={r.state} />
                  <RequestMarks request={r} />
                  {own ? <Badge variant="outline">your request</Badge> : null}
                  <span className="text-xs text-muted-foreground" title={formatTime(r.createdAt)}>
                    by <span data-testid="requester">{names[r.requesterId]?.name ?? '…'}</span> ·{' '}
                    {relativeTime(r.createdAt)}
                  </span>
                  <Link
                    href={`/requests/${r.id}`}
                    className="ml-auto inline-flex items-center gap-1 text-sm text-primary hover:underline"
                  >
                    Open <ExternalLinkIcon aria-hidden="true" className="size-3.5" />
                  </Link>
                </CardHeader>
                <CardContent className="grid gap-4">
                  <dl className="grid gap-3 text-sm sm:grid-cols-3">
                    <div>
                      <dt className="text-xs text-muted-foreground">Reason</dt>
                      <dd className="whitespace-pre-wrap">{r.reason}</dd>
                    </div>
                    <div>
                      <dt className="text-xs text-muted-foreground">Targets</dt>
                      <dd className="font-mono text-xs">
                        {describeTargets(r.targets, hostnames).map((t) => (
                          <div key={t}>{t}</div>
                        ))}
                      </dd>
                    </div>
                    <div>
                      <dt className="text-xs text-muted-foreground">Policy</dt>
                      <dd>
                        {policy?.name ?? '—'} · needs {r.requiredApprovals} approval
                        {r.requiredApprovals === 1 ? '' : 's'}
                        {r.approverRoles.length ? ` (${r.approverRoles.join(' or ')})` : ''}
                      </dd>
                    </div>
                  </dl>
                  <CodeAndParams request={r} script={script} />
                  <RequestPreflight requestId={r.id} />
                  {mayReview(user, r) ? (
                    <ReviewControls request={r} onDone={reload} />
                  ) : own ? (
                    <p className="text-sm text-muted-foreground">
                      You filed this request; someone else has to review it.
                    </p>
                  ) : (
                    <p className="text-sm text-muted-foreground">
                      Your role is not among this request&apos;s approver roles.
                    </p>
                  )}
                </CardContent>
              </Card>
            );
          })}
        </div>
      )}
    </>
  );
}

/** After a reconnect: what was pushed while offline never arrived. */
function useReloadOnReconnect(reload: () => void) {
  const live = useLiveState();
  const [was, setWas] = useState(live);
  useEffect(() => {
    if (live === 'live' && was === 'offline') reload();
    setWas(live);
  }, [live, was, reload]);
}

/** Break-glass requests that ran without votes and wait for a second person's review afterwards. */
function AfterReviewQueue() {
  const { data, reload } = useCall('listRequests', { query: { review: 'after', limit: 100 } });
  // An agent's progress (same state) changes nothing listed here.
  useUiEvent('request:changed', (m) => {
    if (!m.progress) reload();
  });
  const requests = data?.requests ?? [];
  const names = useNames(requests.map((r) => r.requesterId));
  if (requests.length === 0) return null;
  return (
    <Card className="mb-5 border-destructive/40" data-testid="after-review-queue">
      <CardHeader>
        <h2 className="font-semibold">Needs review afterwards (break-glass)</h2>
      </CardHeader>
      <CardContent className="grid gap-4">
        {requests.map((r) => (
          <div
            key={r.id}
            className="grid gap-2 border-t pt-3"
            data-testid="after-review-item"
            data-request-id={r.id}
          >
            <div className="flex flex-wrap items-center gap-2 text-sm">
              <Link href={`/requests/${r.id}`} className="font-medium underline-offset-2 hover:underline">
                {r.kind === 'library' ? r.scriptId : 'custom code'}
              </Link>
              <RequestBadge state={r.state} />
              <RequestMarks request={r} />
              <span className="text-xs text-muted-foreground">
                by {names[r.requesterId]?.name ?? '…'} · {relativeTime(r.createdAt)}
              </span>
            </div>
            <AfterReview request={r} onDone={reload} />
          </div>
        ))}
      </CardContent>
    </Card>
  );
}
