'use client';
import Link from 'next/link';
import { useEffect, useRef, useState } from 'react';
import { CpuIcon, PlayIcon, SearchIcon, ServerIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { LabelList, OnlineBadge, RemoteDebugBadge } from '../../../components/status';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardHeader } from '../../../components/ui/card';
import { Checkbox } from '../../../components/ui/checkbox';
import { Input, NativeSelect } from '../../../components/ui/input';
import { Label } from '../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { useCall } from '../../../lib/client/api';
import { containerOf, middleEllipsis, plural, processName, workloadOf } from '../../../lib/client/process';
import { canDo, useUser } from '../../../lib/client/session';
import { useUiEvent } from '../../../lib/client/socket';
import type { FleetProcess } from '@pyreach/protocol/api';
import { relativeTime } from '../../../lib/client/utils';
import { ProcessDrawer } from './process-drawer';

const PAGE = 100;
const targetKey = (agentId: string, p: FleetProcess) => `${agentId}:${p.pid}:${p.startTime}`;

/** The search box's value, settled: the server filters, so it is asked once typing pauses. */
function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

export function FleetView() {
  const user = useUser();
  const [query, setQuery] = useState('');
  const [status, setStatus] = useState<'all' | 'online' | 'offline'>('all');
  const [label, setLabel] = useState('');
  const [debug, setDebug] = useState<'any' | 'on' | 'off' | 'unknown'>('any');
  const [namespace, setNamespace] = useState('');
  const [workload, setWorkload] = useState('');
  const [order, setOrder] = useState<'host' | 'pod'>('host');
  const [offset, setOffset] = useState(0);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [updatedAt, setUpdatedAt] = useState<number | null>(null);
  const [drawer, setDrawer] = useState<string | null>(null);
  const q = useDebounced(query.trim(), 250);

  // A filter change goes back to the first page.
  useEffect(() => setOffset(0), [q, status, label, debug, namespace, workload, order]);
  // A workload choice is `namespace/Kind/name`: it sets the namespace too, and the query takes `Kind/name`.
  const workloadQuery = workload ? workload.slice(workload.indexOf('/') + 1) : '';
  const workloadNamespace = workload ? workload.slice(0, workload.indexOf('/')) : '';

  const { data, error, loading, reload } = useCall('uiFleet', {
    query: {
      ...(q ? { q } : {}),
      ...(label ? { label } : {}),
      ...(status !== 'all' ? { status } : {}),
      ...(debug !== 'any' ? { debug } : {}),
      ...(namespace || workloadNamespace ? { namespace: workloadNamespace || namespace } : {}),
      ...(workloadQuery ? { workload: workloadQuery } : {}),
      ...(order !== 'host' ? { order } : {}),
      ...(offset ? { offset } : {}),
      limit: PAGE,
    },
  });

  // Inventory changes arrive as bursts; coalesce them into one refetch.
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useUiEvent('fleet:changed', () => {
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      reload();
      setUpdatedAt(Date.now());
    }, 300);
  });

  const hosts = data?.hosts ?? [];
  const total = data?.page.total ?? 0;
  const mayRequest = canDo(user.role, 'request:create');
  const filtering = !!(q || label || status !== 'all' || debug !== 'any' || namespace || workload);

  function toggle(key: string, on: boolean) {
    setSelected((prev) => {
      const next = new Set(prev);
      if (on) next.add(key);
      else next.delete(key);
      return next;
    });
  }

  return (
    <>
      <PageHeader
        title="Fleet"
        description={
          data ? (
            <span aria-live="polite" data-testid="fleet-totals">
              {plural(data.totals.hosts, 'host')} · {data.totals.online} online ·{' '}
              {plural(data.totals.processes, 'Python process', 'Python processes')}
              {updatedAt ? ` · updated ${relativeTime(new Date(updatedAt))}` : ''}
            </span>
          ) : (
            'Hosts, their agents and the Python processes they can reach.'
          )
        }
        actions={
          mayRequest ? (
            <Button asChild>
              <Link
                href={
                  selected.size
                    ? `/requests/new?targets=${encodeURIComponent([...selected].join(','))}`
                    : '/requests/new'
                }
                data-testid="request-selected"
              >
                <PlayIcon aria-hidden="true" />
                {selected.size ? `Request on ${selected.size} selected` : 'New request'}
              </Link>
            </Button>
          ) : null
        }
      />

      <div className="mb-4 flex flex-wrap gap-3" role="search" aria-label="Filter the fleet">
        <div className="relative min-w-64 flex-1">
          <Label htmlFor="fleet-search" className="sr-only">
            Search hosts and processes
          </Label>
          <SearchIcon
            aria-hidden="true"
            className="pointer-events-none absolute top-2.5 left-2.5 size-4 text-muted-foreground"
          />
          <Input
            id="fleet-search"
            type="search"
            placeholder="Search host, pid, user, script, command line…"
            className="pl-8"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
          />
        </div>
        <div>
          <Label htmlFor="fleet-status" className="sr-only">
            Host status
          </Label>
          <NativeSelect
            id="fleet-status"
            value={status}
            onChange={(e) => setStatus(e.target.value as typeof status)}
          >
            <option value="all">All hosts</option>
            <option value="online">Online</option>
            <option value="offline">Offline</option>
          </NativeSelect>
        </div>
        <div>
          <Label htmlFor="fleet-label" className="sr-only">
            Label
          </Label>
          <NativeSelect id="fleet-label" value={label} onChange={(e) => setLabel(e.target.value)}>
            <option value="">Any label</option>
            {(data?.labels ?? []).map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </NativeSelect>
        </div>
        <div>
          <Label htmlFor="fleet-debug" className="sr-only">
            Remote debugging
          </Label>
          <NativeSelect
            id="fleet-debug"
            value={debug}
            onChange={(e) => setDebug(e.target.value as typeof debug)}
          >
            <option value="any">Remote debug: any</option>
            <option value="on">Remote debug: on</option>
            <option value="off">Remote debug: off</option>
            <option value="unknown">Remote debug: unknown</option>
          </NativeSelect>
        </div>
        <div>
          <Label htmlFor="fleet-namespace" className="sr-only">
            Namespace
          </Label>
          <NativeSelect
            id="fleet-namespace"
            value={workloadNamespace || namespace}
            onChange={(e) => {
              setNamespace(e.target.value);
              setWorkload('');
            }}
          >
            <option value="">Any namespace</option>
            {(data?.namespaces ?? []).map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </NativeSelect>
        </div>
        <div>
          <Label htmlFor="fleet-workload" className="sr-only">
            Workload
          </Label>
          <NativeSelect id="fleet-workload" value={workload} onChange={(e) => setWorkload(e.target.value)}>
            <option value="">Any workload</option>
            {(data?.workloads ?? [])
              .filter((w) => !namespace || w.startsWith(`${namespace}/`))
              .map((w) => (
                <option key={w} value={w}>
                  {w}
                </option>
              ))}
          </NativeSelect>
        </div>
        <div>
          <Label htmlFor="fleet-order" className="sr-only">
            Order by
          </Label>
          <NativeSelect
            id="fleet-order"
            value={order}
            onChange={(e) => setOrder(e.target.value as typeof order)}
          >
            <option value="host">By host</option>
            <option value="pod">By namespace, workload, pod</option>
          </NativeSelect>
        </div>
      </div>

      {error ? (
        <ErrorState error={error} onRetry={reload} title="Could not load the fleet" />
      ) : loading && !data ? (
        <LoadingRows rows={5} label="Loading the fleet" />
      ) : data && data.totals.hosts === 0 ? (
        <EmptyState title="No hosts yet" icon={<ServerIcon />}>
          Hosts appear here when an agent enrols.{' '}
          {canDo(user.role, 'user:manage') ? (
            <>
              Create a join token under{' '}
              <Link className="underline" href="/admin?tab=agents">
                Admin → Agents
              </Link>
              .
            </>
          ) : (
            'Ask an admin for a join token.'
          )}
        </EmptyState>
      ) : hosts.length === 0 && filtering ? (
        <EmptyState title="Nothing matches these filters" icon={<SearchIcon />} />
      ) : (
        <div className="grid min-w-0 gap-4" data-testid="fleet-hosts" aria-busy={loading}>
          {hosts.map((host) => (
            <Card key={host.id} data-testid="host-card" data-hostname={host.hostname} className="min-w-0">
              <CardHeader className="flex-row flex-wrap items-center gap-x-3 gap-y-1">
                <h2 className="flex items-center gap-2 font-semibold">
                  <ServerIcon aria-hidden="true" className="size-4 text-muted-foreground" />
                  {host.hostname}
                </h2>
                <OnlineBadge status={host.agent.status} revoked={!!host.agent.revokedAt} />
                <span className="text-xs text-muted-foreground" title={host.agent.lastSeenAt ?? undefined}>
                  last seen {relativeTime(host.agent.lastSeenAt)}
                </span>
                <span className="text-xs text-muted-foreground">agent {host.agent.version}</span>
                {host.agent.backlog ? (
                  <Badge
                    variant="warning"
                    data-testid="agent-backlog"
                    title={`reports waiting in the agent's outbox; the oldest for ${host.agent.outboxOldestAgeSeconds ?? '?'} s`}
                  >
                    backlog: {host.agent.outboxDepth} waiting, oldest{' '}
                    {host.agent.outboxOldestAgeSeconds ?? '?'} s
                  </Badge>
                ) : host.agent.outboxDepth > 0 ? (
                  <span className="text-xs text-muted-foreground">outbox {host.agent.outboxDepth}</span>
                ) : null}
                <span className="text-xs text-muted-foreground">
                  {host.os} · {host.kernel} · {host.arch}
                </span>
                <span className="ml-auto min-w-0">
                  <LabelList labels={host.agent.labels} />
                </span>
              </CardHeader>
              <CardContent className="min-w-0">
                {host.processes.length === 0 ? (
                  <p className="py-3 text-sm text-muted-foreground">
                    No Python processes found on this host.
                  </p>
                ) : (
                  // table-fixed with explicit widths: long command lines shrink (cut in the middle) instead of
                  // pushing the table wider than the page.
                  <table
                    className="w-full table-fixed caption-bottom text-sm"
                    aria-label={`Python processes on ${host.hostname}`}
                  >
                    <THead>
                      <TR>
                        {mayRequest ? (
                          <TH className="w-10">
                            <span className="sr-only">Select</span>
                          </TH>
                        ) : null}
                        <TH>Process</TH>
                        <TH className="w-28">PID</TH>
                        <TH className="w-28">User</TH>
                        <TH className="w-32">Python</TH>
                        <TH className="w-32">Remote debug</TH>
                        <TH className="w-24 text-right">Threads</TH>
                      </TR>
                    </THead>
                    <TBody>
                      {host.processes.map((p) => {
                        const key = targetKey(host.agent.id, p);
                        const cmd = p.cmdline.join(' ');
                        const container = containerOf(p);
                        const owner = workloadOf(p);
                        const inPod = !!p.containerIdentity?.pod;
                        return (
                          <TR
                            key={p.id}
                            data-testid="process-row"
                            data-process-id={p.id}
                            data-state={selected.has(key) ? 'selected' : undefined}
                            className="cursor-pointer"
                            onClick={() => setDrawer(p.id)}
                          >
                            {mayRequest ? (
                              <TD onClick={(e) => e.stopPropagation()}>
                                <Checkbox
                                  aria-label={`Select pid ${p.pid} on ${host.hostname}`}
                                  checked={selected.has(key)}
                                  onCheckedChange={(v) => toggle(key, v === true)}
                                />
                              </TD>
                            ) : null}
                            <TD className="min-w-0">
                              <button
                                type="button"
                                className="block max-w-full truncate text-left font-medium hover:underline focus-visible:outline-2 focus-visible:outline-ring"
                                data-testid="process-name"
                                aria-label={`Details of ${processName(p)}, pid ${p.pid} on ${host.hostname}`}
                                onClick={(e) => {
                                  e.stopPropagation();
                                  setDrawer(p.id);
                                }}
                              >
                                {processName(p)}
                              </button>
                              <code
                                className="block truncate font-mono text-xs text-muted-foreground"
                                title={cmd}
                                data-testid="process-cmdline"
                              >
                                {middleEllipsis(cmd, 56)}
                              </code>
                              {container ? (
                                <span
                                  className="block truncate text-xs text-muted-foreground"
                                  title={owner ? `${container} · ${owner}` : container}
                                  data-testid={inPod ? 'process-pod' : 'process-container'}
                                >
                                  {inPod ? 'pod' : 'container'} {container}
                                  {owner ? ` · ${owner}` : ''}
                                </span>
                              ) : null}
                            </TD>
                            <TD className="font-mono tabular-nums whitespace-nowrap">
                              {p.pid}
                              {p.inContainer && p.nsPid !== p.pid ? (
                                <span className="block text-xs text-muted-foreground">{p.nsPid} in ns</span>
                              ) : null}
                            </TD>
                            <TD className="truncate" title={p.user ?? undefined}>
                              {p.user ?? `uid ${p.uid}`}
                            </TD>
                            <TD className="whitespace-nowrap">
                              {p.pythonVersion ?? <span className="text-muted-foreground">unknown</span>}
                              {p.freeThreaded ? (
                                <Badge variant="secondary" className="ml-1">
                                  free-threaded
                                </Badge>
                              ) : null}
                            </TD>
                            <TD>
                              <RemoteDebugBadge p={p} />
                            </TD>
                            <TD className="text-right tabular-nums">
                              <span className="inline-flex items-center gap-1">
                                <CpuIcon aria-hidden="true" className="size-3 text-muted-foreground" />
                                {p.threads.length}
                              </span>
                            </TD>
                          </TR>
                        );
                      })}
                    </TBody>
                  </table>
                )}
              </CardContent>
            </Card>
          ))}
        </div>
      )}
      {data && total > 0 ? (
        <nav className="mt-3 flex items-center gap-2" aria-label="Fleet pages" data-testid="fleet-pager">
          <Button
            variant="outline"
            size="sm"
            disabled={offset === 0}
            onClick={() => setOffset(Math.max(offset - PAGE, 0))}
          >
            Previous
          </Button>
          <Button
            variant="outline"
            size="sm"
            disabled={offset + PAGE >= total}
            onClick={() => setOffset(offset + PAGE)}
          >
            Next
          </Button>
          <span className="text-xs text-muted-foreground" data-testid="fleet-range">
            {Math.min(offset + 1, total)}–{Math.min(offset + PAGE, total)} of{' '}
            {plural(total, 'process', 'processes')}
            {filtering ? ' matching' : ''}
          </span>
        </nav>
      ) : null}
      <ProcessDrawer id={drawer} onClose={() => setDrawer(null)} />
    </>
  );
}
