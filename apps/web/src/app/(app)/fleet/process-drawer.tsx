'use client';
import { displayText } from '@pyreach/protocol/text';
import Link from 'next/link';
import {
  ExecutionBadge,
  LabelList,
  OnlineBadge,
  RemoteDebugBadge,
  RequestBadge,
} from '../../../components/status';
import { Badge } from '../../../components/ui/badge';
import { CopyButton } from '../../../components/ui/copy-button';
import {
  Dialog,
  DialogContent,
  DialogDescription,
  DialogHeader,
  DialogTitle,
} from '../../../components/ui/dialog';
import { ErrorState, LoadingRows } from '../../../components/ui/states';
import { useCall } from '../../../lib/client/api';
import { containerOf, processName, workloadOf } from '../../../lib/client/process';
import { formatTime, relativeTime } from '../../../lib/client/utils';
import { StacksPanel } from './stacks-panel';

/** The fleet's detail drawer: everything known about one process, and the requests that targeted it. */
export function ProcessDrawer({ id, onClose }: { id: string | null; onClose: () => void }) {
  const { data, error, loading, reload } = useCall('uiFleetProcess', id ? { params: { id } } : null);
  const d = data && data.process.id === id ? data : null;
  return (
    <Dialog open={id !== null} onOpenChange={(o) => !o && onClose()}>
      <DialogContent
        data-testid="process-drawer"
        className="top-0 right-0 left-auto h-dvh w-full max-w-xl translate-x-0 translate-y-0 content-start overflow-y-auto rounded-none border-l sm:w-[36rem]"
      >
        <DialogHeader>
          <DialogTitle className="pr-8 break-all">{d ? processName(d.process) : 'Process'}</DialogTitle>
          <DialogDescription>
            {d ? `pid ${d.process.pid} on ${d.host.hostname} · seen ${relativeTime(d.process.seenAt)}` : '…'}
          </DialogDescription>
        </DialogHeader>
        {error ? (
          <ErrorState error={error} onRetry={reload} title="Could not load this process" />
        ) : !d || loading ? (
          <LoadingRows rows={4} label="Loading the process" />
        ) : (
          <>
            <section className="grid gap-1.5">
              <div className="flex items-center justify-between">
                <h3 className="text-sm font-semibold">Command line</h3>
                <CopyButton text={d.process.cmdline.join(' ')} label="Copy command line" />
              </div>
              <pre
                className="max-h-48 overflow-auto rounded-md border bg-muted/40 p-2 font-mono text-xs break-all whitespace-pre-wrap"
                data-testid="drawer-cmdline"
              >
                {d.process.cmdline.join(' ')}
              </pre>
            </section>
            <dl
              className="grid grid-cols-[auto_minmax(0,1fr)] gap-x-4 gap-y-1.5 text-sm"
              data-testid="drawer-facts"
            >
              <dt className="text-muted-foreground">Host</dt>
              <dd className="flex flex-wrap items-center gap-2">
                {d.host.hostname}{' '}
                <OnlineBadge status={d.host.agent.status} revoked={!!d.host.agent.revokedAt} />
              </dd>
              <dt className="text-muted-foreground">Labels</dt>
              <dd>
                <LabelList labels={d.host.agent.labels} />
              </dd>
              <dt className="text-muted-foreground">User</dt>
              <dd>
                {d.process.user ?? 'unknown'}{' '}
                <span className="text-muted-foreground">(uid {d.process.uid})</span>
              </dd>
              <dt className="text-muted-foreground">Container</dt>
              <dd className="break-all">
                {containerOf(d.process) ?? <span className="text-muted-foreground">none (host process)</span>}
              </dd>
              {d.process.containerIdentity?.pod ? (
                <>
                  <dt className="text-muted-foreground">Workload</dt>
                  <dd data-testid="drawer-workload">
                    {workloadOf(d.process) ?? (
                      <span className="text-muted-foreground">none (a bare pod)</span>
                    )}
                  </dd>
                  <dt className="text-muted-foreground">Pod labels</dt>
                  <dd>
                    <LabelList labels={d.process.containerIdentity.pod.labels} />
                    <span className="block text-xs text-muted-foreground">
                      as the agent reports them: they select targets, never the policy
                    </span>
                  </dd>
                </>
              ) : null}
              <dt className="text-muted-foreground">PID</dt>
              <dd className="font-mono">
                {d.process.pid}
                {d.process.nsPid !== d.process.pid ? ` (${d.process.nsPid} in its namespace)` : ''}
              </dd>
              <dt className="text-muted-foreground">Executable</dt>
              <dd className="font-mono text-xs break-all">{d.process.exe}</dd>
              {d.process.cwd ? (
                <>
                  <dt className="text-muted-foreground">Working dir</dt>
                  <dd className="font-mono text-xs break-all">{d.process.cwd}</dd>
                </>
              ) : null}
              <dt className="text-muted-foreground">Python</dt>
              <dd>
                {d.process.pythonVersion ?? 'unknown'}
                {d.process.freeThreaded ? ' (free-threaded)' : ''}
              </dd>
              <dt className="text-muted-foreground">Remote debug</dt>
              <dd>
                <RemoteDebugBadge p={d.process} />
                {d.process.inspectError ? (
                  <span className="block text-xs text-muted-foreground">{d.process.inspectError}</span>
                ) : null}
              </dd>
            </dl>
            <section className="grid gap-1.5">
              <h3 className="text-sm font-semibold">Threads ({d.process.threads.length})</h3>
              {d.process.threads.length === 0 ? (
                <p className="text-sm text-muted-foreground">
                  Not known (the process could not be inspected).
                </p>
              ) : (
                <ul className="flex flex-wrap gap-1" data-testid="drawer-threads">
                  {d.process.threads.map((t) => (
                    <li key={t.tid}>
                      <Badge variant={t.main ? 'default' : 'outline'} className="font-mono font-normal">
                        {t.name ? `${displayText(t.name)} · ` : ''}tid {t.tid}
                        {t.main ? ' · main' : ''}
                      </Badge>
                    </li>
                  ))}
                </ul>
              )}
            </section>
            {d.host.agent.status === 'online' && !d.host.agent.revokedAt ? (
              <StacksPanel
                key={d.process.id}
                target={{ agentId: d.host.agent.id, pid: d.process.pid, startTime: d.process.startTime }}
              />
            ) : null}
            <section className="grid gap-1.5">
              <h3 className="text-sm font-semibold">Recent requests on this process</h3>
              {d.recentRequests.length === 0 ? (
                <p className="text-sm text-muted-foreground">None yet.</p>
              ) : (
                <ul className="grid gap-1.5" data-testid="drawer-requests">
                  {d.recentRequests.map((r) => (
                    <li key={r.requestId} className="flex flex-wrap items-center gap-2 text-sm">
                      <Link
                        href={`/requests/${r.requestId}`}
                        className="font-medium underline-offset-2 hover:underline"
                      >
                        {r.scriptId ?? 'custom code'}
                      </Link>
                      <RequestBadge state={r.requestState} />
                      <ExecutionBadge state={r.executionState} />
                      <span className="text-xs text-muted-foreground" title={formatTime(r.queuedAt)}>
                        {relativeTime(r.queuedAt)}
                      </span>
                      <span className="w-full truncate text-xs text-muted-foreground">{r.reason}</span>
                    </li>
                  ))}
                </ul>
              )}
            </section>
          </>
        )}
      </DialogContent>
    </Dialog>
  );
}
