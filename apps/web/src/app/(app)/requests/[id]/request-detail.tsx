'use client';
import Link from 'next/link';
import { useCallback, useEffect, useState } from 'react';
import { BanIcon, ClockIcon, ServerIcon, UserIcon } from 'lucide-react';
import { PageHeader } from '../../../../components/shell/app-shell';
import { CodeAndParams, describeTargets } from '../../../../components/requests/code-and-params';
import { ExecutionCounts } from '../../../../components/requests/execution-counts';
import {
  ExecutionTable,
  OutcomeGroups,
  OutputBox,
  RetryFailed,
} from '../../../../components/requests/execution-results';
import { AfterReview } from '../../../../components/requests/after-review';
import { ReviewControls } from '../../../../components/requests/review-controls';
import { RestorePanel } from '../../../../components/requests/restore-panel';
import { RequestPreflight } from '../../../../components/requests/preflight-panel';
import { ExecutionBadge, RequestBadge, RequestMarks } from '../../../../components/status';
import { Alert } from '../../../../components/ui/alert';
import { Badge } from '../../../../components/ui/badge';
import { Button } from '../../../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../../components/ui/card';
import { CodeBlock, SafeTextView } from '../../../../components/ui/code-block';
import { EmptyState, ErrorState, LoadingRows } from '../../../../components/ui/states';
import { api, errorMessage, isApiError, useCall, useHostnames, useNames } from '../../../../lib/client/api';
import { useUser } from '../../../../lib/client/session';
import { useUiEvent } from '../../../../lib/client/socket';
import { useLiveRequest } from '../../../../lib/client/use-live-request';
import { mayReview, type ExecutionDetail as Execution } from '@pyreach/protocol/api';
import { uninterruptedHint } from '@pyreach/protocol/exec';
import { EXECUTION } from '@pyreach/protocol/states';
import { formatTime, relativeTime } from '../../../../lib/client/utils';

/** What each engine error code asks the operator to do, beside the engine's own message. */
const ERROR_HINTS: Record<string, string> = {
  PERMISSION_DENIED:
    'The agent may not ptrace the target: run it as root or grant CAP_SYS_PTRACE, and check kernel.yama.ptrace_scope.',
  REMOTE_DEBUG_DISABLED:
    'The target disabled remote debugging (PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug or a build without it). Restart it without that setting.',
  UNSUPPORTED_VERSION: 'Remote execution needs CPython 3.14 or newer in the target.',
  PICKUP_TIMEOUT:
    'The target thread never reached a safe point (blocked in C code or idle). Pick another thread, or retry when it is busy.',
  TARGET_GONE: 'The process exited (or was replaced) before the code ran.',
  TIME_BUDGET_EXCEEDED:
    'The code ran longer than its time budget and was stopped. Raise the budget or make it do less.',
  CANCELLED: 'The run was cancelled and its code was stopped; the output so far is kept.',
  REPORT_REFUSED:
    'The control plane refused one of this job’s reports for good (the reason is above); the agent keeps the rest in its local journal.',
  USER_EXCEPTION: 'The code raised an exception inside the target; see the traceback.',
};

/** The hint under an execution's error: one text for code that could not be interrupted, whatever ended it. */
function hintOf(e: Execution): string | null {
  if (e.leftoverThread) return uninterruptedHint(e.leftoverThread);
  return e.errorCode ? (ERROR_HINTS[e.errorCode] ?? null) : null;
}

function ExecutionCard({ e, hostname, requestId }: { e: Execution; hostname?: string; requestId: string }) {
  const output = e.output ?? '';
  const running = !EXECUTION[e.state].terminal;
  const hint = hintOf(e);
  return (
    <Card data-testid="execution" data-execution-id={e.id} data-state={e.state}>
      <CardHeader className="flex-row flex-wrap items-center gap-x-3 gap-y-1">
        <h3 className="flex items-center gap-2 text-sm font-semibold">
          <ServerIcon aria-hidden="true" className="size-4 text-muted-foreground" />
          {hostname ?? e.agentId.slice(0, 8)} · pid {e.pid}
        </h3>
        <ExecutionBadge state={e.state} />
        {running && !e.queuedBehind ? (
          <span className="text-xs text-muted-foreground animate-pulse">running…</span>
        ) : null}
        {e.queuedBehind ? (
          <span data-testid="execution-queued-behind" className="text-xs text-muted-foreground">
            queued behind job{' '}
            {e.queuedBehind.requestId ? (
              <Link className="underline" href={`/requests/${e.queuedBehind.requestId}`}>
                {e.queuedBehind.jobId}
              </Link>
            ) : (
              e.queuedBehind.jobId
            )}
            {e.queuedBehind.ahead > 1 ? ` (${e.queuedBehind.ahead} ahead)` : ''}
          </span>
        ) : null}
        {e.leftoverThread ? (
          <Badge variant="warning" data-testid="execution-leftover-thread">
            may still be running · tid {e.leftoverThread.tid}
          </Badge>
        ) : null}
        <span className="ml-auto text-xs text-muted-foreground">
          {e.pickedUpAt
            ? `picked up ${formatTime(e.pickedUpAt)}`
            : e.sentAt
              ? `sent ${formatTime(e.sentAt)}`
              : `queued ${formatTime(e.queuedAt)}`}
          {e.finishedAt ? ` · finished ${formatTime(e.finishedAt)}` : ''}
        </span>
      </CardHeader>
      <CardContent className="grid gap-3">
        {e.errorCode || e.errorMessage ? (
          <Alert
            variant={e.state === 'succeeded' ? 'warning' : 'destructive'}
            title={<span data-testid="execution-error-code">{e.errorCode ?? 'Error'}</span>}
          >
            <div className="grid gap-1">
              {e.errorMessage ? (
                <p data-testid="execution-error-message" className="whitespace-pre-wrap text-foreground">
                  <SafeTextView text={e.errorMessage} />
                </p>
              ) : null}
              {hint ? <p data-testid="execution-error-hint">{hint}</p> : null}
            </div>
          </Alert>
        ) : null}
        <OutputBox requestId={requestId} e={e} output={output} running={running} />
        {e.error?.traceback ? (
          <CodeBlock label={`Traceback (${e.error.type ?? 'error'})`} testId="execution-traceback">
            {e.error.traceback}
          </CodeBlock>
        ) : e.error?.message ? (
          <CodeBlock label={`Exception (${e.error.type ?? 'error'})`}>{e.error.message}</CodeBlock>
        ) : null}
        {e.result !== null && e.result !== undefined ? (
          <CodeBlock label="Result" testId="execution-result">
            {JSON.stringify(e.result, null, 2)}
          </CodeBlock>
        ) : null}
      </CardContent>
    </Card>
  );
}

export function RequestDetail({ id }: { id: string }) {
  const user = useUser();
  // Kept current by its pushes; read again only on a gap, a (re)join, an end or a changed record.
  const req = useLiveRequest(id);
  const timeline = useCall('queryAudit', { query: { subjectType: 'request', subjectId: id, limit: 200 } });
  const scripts = useCall('listScripts', {});
  const policies = useCall('listPolicies', {});
  const hostnames = useHostnames();
  const [cancelError, setCancelError] = useState<unknown>(null);

  const { reload: reloadRequest } = req;
  const { reload: reloadTimeline } = timeline;
  const reloadAll = useCallback(() => {
    reloadRequest();
    reloadTimeline();
  }, [reloadRequest, reloadTimeline]);

  const r = req.data;
  // The timeline (audit) moves with the states, not with every output chunk.
  const stateKey = r ? `${r.state} ${r.executions.map((e) => e.state).join(',')}` : '';
  useEffect(() => {
    if (stateKey) reloadTimeline();
  }, [stateKey, reloadTimeline]);
  // …and with a change of the record that leaves the states alone (a vote, an edit, a restore run): each is audited.
  useUiEvent('request:changed', (m) => {
    if (m.requestId === id && !m.progress) reloadTimeline();
  });

  const names = useNames([r?.requesterId, ...(r?.reviews ?? []).map((x) => x.reviewerId)]);

  if (req.error) {
    return (
      <>
        <PageHeader title="Request" />
        {isApiError(req.error, 'NOT_FOUND') ? (
          <EmptyState title="No such request">
            It may have been mistyped.{' '}
            <Link className="underline" href="/requests">
              All requests
            </Link>
          </EmptyState>
        ) : (
          <ErrorState error={req.error} onRetry={reloadRequest} />
        )}
      </>
    );
  }
  if (!r) return <LoadingRows rows={6} label="Loading the request" />;

  const script = scripts.data?.scripts.find((s) => s.id === r.scriptId);
  const policy = policies.data?.policies.find((p) => p.id === r.policyId);
  const reviewable = mayReview(user, r);
  const own = r.requesterId === user.id;
  const cancellable =
    (own || user.role === 'admin') &&
    ['pending', 'approved', 'dispatching'].includes(r.state) &&
    (user.role === 'operator' || user.role === 'admin');
  const voided = r.voidedReviews;
  const executions = r.executions;

  async function cancel() {
    setCancelError(null);
    try {
      await api('cancelRequest', { params: { id }, body: { reason: 'cancelled from the dashboard' } });
      reloadAll();
    } catch (err) {
      setCancelError(err);
    }
  }

  return (
    <>
      <PageHeader
        title={r.kind === 'library' ? (script?.title ?? r.scriptId ?? 'Library script') : 'Custom code'}
        description={
          <span className="flex flex-wrap items-center gap-2">
            <RequestBadge state={r.state} />
            <RequestMarks request={r} />
            <span className="font-mono text-xs">{r.id}</span>
            <span className="inline-flex items-center gap-1">
              <UserIcon aria-hidden="true" className="size-3.5" />
              <span data-testid="requester">{names[r.requesterId]?.name ?? r.requesterId.slice(0, 8)}</span>
            </span>
            <span className="inline-flex items-center gap-1" title={formatTime(r.createdAt)}>
              <ClockIcon aria-hidden="true" className="size-3.5" /> {relativeTime(r.createdAt)}
            </span>
            {r.revision > 1 ? <Badge variant="outline">revision {r.revision}</Badge> : null}
          </span>
        }
        actions={
          cancellable ? (
            <Button variant="outline" onClick={() => void cancel()}>
              <BanIcon aria-hidden="true" /> Cancel request
            </Button>
          ) : null
        }
      />
      {cancelError ? (
        <Alert variant="destructive" title="Not cancelled" className="mb-4">
          {errorMessage(cancelError)}
        </Alert>
      ) : null}

      <div className="grid gap-5 lg:grid-cols-[minmax(0,1fr)_22rem]">
        <div className="grid min-w-0 content-start gap-5">
          <Card>
            <CardHeader>
              <CardTitle>What runs</CardTitle>
            </CardHeader>
            <CardContent>
              <CodeAndParams request={r} script={script} />
            </CardContent>
          </Card>
          {r.state === 'pending' || r.state === 'approved' ? <RequestPreflight requestId={r.id} /> : null}

          <section aria-labelledby="exec-heading" className="grid gap-3">
            <h2 id="exec-heading" className="text-base font-semibold">
              Executions{' '}
              {executions.length ? (
                <span className="text-muted-foreground">
                  ({executions.filter((e) => e.state === 'succeeded').length}/{executions.length} succeeded)
                </span>
              ) : null}
            </h2>
            <div className="flex flex-wrap items-center gap-2">
              <ExecutionCounts states={executions.map((e) => e.state)} />
              <span className="ml-auto">
                <RetryFailed requestId={r.id} executions={executions} />
              </span>
            </div>
            <OutcomeGroups executions={executions} />
            {executions.length === 0 ? (
              <EmptyState
                title={
                  r.state === 'pending'
                    ? 'Waiting for approval'
                    : r.state === 'approved'
                      ? 'Approved — dispatching shortly'
                      : 'No executions'
                }
              >
                {r.state === 'pending'
                  ? `Nothing runs until ${r.requiredApprovals} approval${r.requiredApprovals === 1 ? '' : 's'} are in.`
                  : r.state === 'approved'
                    ? 'The dispatcher resolves the targets and sends signed jobs to their agents.'
                    : 'This request ended before anything ran.'}
              </EmptyState>
            ) : (
              <ExecutionTable
                executions={executions}
                hostnames={hostnames}
                // A few targets: every card open; many: a row opens its card.
                initiallyOpen={executions.length <= 5}
                renderOpen={(e) => <ExecutionCard e={e} hostname={hostnames[e.agentId]} requestId={r.id} />}
              />
            )}
          </section>
        </div>

        <aside className="grid content-start gap-5">
          <AfterReview request={r} onDone={reloadAll} />
          <RestorePanel request={r} />
          {reviewable ? (
            <Card className="border-primary/40">
              <CardHeader>
                <CardTitle>Your review</CardTitle>
                <CardDescription>
                  Approve only what you have read: the exact code, parameters and targets on this page.
                </CardDescription>
              </CardHeader>
              <CardContent>
                <ReviewControls request={r} onDone={reloadAll} />
              </CardContent>
            </Card>
          ) : r.state === 'pending' && own ? (
            <Alert variant="info" title="Your own request">
              Someone else has to approve it.
            </Alert>
          ) : null}

          <Card>
            <CardHeader>
              <CardTitle>Details</CardTitle>
            </CardHeader>
            <CardContent>
              <dl className="grid gap-3 text-sm">
                <div>
                  <dt className="text-xs text-muted-foreground">Reason</dt>
                  <dd className="whitespace-pre-wrap" data-testid="request-reason">
                    {r.reason}
                  </dd>
                </div>
                <div>
                  <dt className="text-xs text-muted-foreground">Targets</dt>
                  <dd>
                    <ul className="grid gap-0.5 font-mono text-xs" data-testid="request-targets">
                      {describeTargets(r.targets, hostnames).map((t) => (
                        <li key={t}>{t}</li>
                      ))}
                    </ul>
                  </dd>
                </div>
                <div>
                  <dt className="text-xs text-muted-foreground">Policy</dt>
                  <dd>
                    <span className="font-medium">{policy?.name ?? r.policyId ?? '—'}</span> ·{' '}
                    {r.requiredApprovals === 0
                      ? 'no approval needed'
                      : `${r.requiredApprovals} approval${r.requiredApprovals === 1 ? '' : 's'}`}
                    {r.approverRoles.length ? ` from ${r.approverRoles.join(' or ')}` : ''}
                  </dd>
                </div>
                <div>
                  <dt className="text-xs text-muted-foreground">Approvals</dt>
                  <dd data-testid="approval-count">
                    {r.approvals} of {r.requiredApprovals}
                    {voided > 0 ? (
                      <span className="text-muted-foreground"> ({voided} voided by an edit)</span>
                    ) : null}
                    {r.approvalExpiresAt ? (
                      <span className="text-muted-foreground">
                        {' '}
                        · valid until {formatTime(r.approvalExpiresAt)}
                      </span>
                    ) : null}
                  </dd>
                </div>
                <div>
                  <dt className="text-xs text-muted-foreground">Rollout</dt>
                  <dd>
                    concurrency {r.rollout.concurrency} · stop after {r.rollout.maxFailures} failure(s)
                  </dd>
                </div>
              </dl>
            </CardContent>
          </Card>

          <Card>
            <CardHeader>
              <CardTitle>Reviews</CardTitle>
            </CardHeader>
            <CardContent>
              {r.reviews.length === 0 ? (
                <p className="text-sm text-muted-foreground">No reviews yet.</p>
              ) : (
                <ul className="grid gap-2 text-sm" data-testid="reviews">
                  {r.reviews.map((v) => (
                    <li key={v.id} className="rounded-md border p-2">
                      <div className="flex items-center gap-2">
                        <Badge variant={v.decision === 'approve' ? 'success' : 'destructive'}>
                          {v.decision === 'approve' ? 'approved' : 'rejected'}
                        </Badge>
                        <span className="font-medium">
                          {names[v.reviewerId]?.name ?? v.reviewerId.slice(0, 8)}
                        </span>
                        <span className="ml-auto text-xs text-muted-foreground">
                          {relativeTime(v.createdAt)}
                        </span>
                      </div>
                      {v.comment ? (
                        <p className="mt-1 whitespace-pre-wrap text-muted-foreground">{v.comment}</p>
                      ) : null}
                    </li>
                  ))}
                </ul>
              )}
            </CardContent>
          </Card>

          <Card>
            <CardHeader>
              <CardTitle>Timeline</CardTitle>
              <CardDescription>From the audit log.</CardDescription>
            </CardHeader>
            <CardContent>
              {timeline.error ? (
                <ErrorState error={timeline.error} onRetry={timeline.reload} />
              ) : !timeline.data ? (
                <LoadingRows rows={3} />
              ) : timeline.data.events.length === 0 ? (
                <p className="text-sm text-muted-foreground">No events.</p>
              ) : (
                <ol className="relative grid gap-3 border-l pl-4 text-sm" data-testid="timeline">
                  {[...timeline.data.events].reverse().map((ev) => (
                    <li key={String(ev.seq)} className="relative">
                      <span
                        aria-hidden="true"
                        className="absolute top-1.5 -left-[21px] size-2.5 rounded-full border-2 border-background bg-primary"
                      />
                      <div className="font-mono text-xs font-medium">{ev.action}</div>
                      <div className="text-xs text-muted-foreground">
                        {ev.actorName ?? ev.actorType} · <time dateTime={ev.at}>{formatTime(ev.at)}</time> · #
                        {String(ev.seq)}
                      </div>
                    </li>
                  ))}
                </ol>
              )}
            </CardContent>
          </Card>
        </aside>
      </div>
    </>
  );
}
