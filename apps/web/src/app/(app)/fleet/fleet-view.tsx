'use client';
import Link from 'next/link';
import { useMemo, useRef, useState } from 'react';
import { CpuIcon, PlayIcon, SearchIcon, ServerIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { LabelList, OnlineBadge } from '../../../components/status';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardHeader } from '../../../components/ui/card';
import { Checkbox } from '../../../components/ui/checkbox';
import { Input, NativeSelect } from '../../../components/ui/input';
import { Label } from '../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { useCall } from '../../../lib/client/api';
import { canDo, useUser } from '../../../lib/client/session';
import { useUiEvent } from '../../../lib/client/socket';
import type { FleetProcess } from '@pyreach/protocol/api';
import { relativeTime } from '../../../lib/client/utils';

function processMatches(p: FleetProcess, q: string): boolean {
  if (!q) return true;
  const hay = [
    String(p.pid),
    p.user ?? '',
    p.exe,
    p.cmdline.join(' '),
    p.container ?? '',
    p.pythonVersion ?? '',
  ]
    .join(' ')
    .toLowerCase();
  return q
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => hay.includes(w));
}

const targetKey = (agentId: string, p: FleetProcess) => `${agentId}:${p.pid}:${p.startTime}`;

export function FleetView() {
  const user = useUser();
  const { data, error, loading, reload } = useCall('uiFleet', {});
  const [query, setQuery] = useState('');
  const [status, setStatus] = useState<'all' | 'online' | 'offline'>('all');
  const [label, setLabel] = useState('');
  const [debug, setDebug] = useState<'any' | 'on' | 'off'>('any');
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [updatedAt, setUpdatedAt] = useState<number | null>(null);

  // Inventory changes arrive as bursts; coalesce them into one refetch.
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useUiEvent('fleet:changed', () => {
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      reload();
      setUpdatedAt(Date.now());
    }, 300);
  });

  const hosts = useMemo(() => data?.hosts ?? [], [data]);
  const allLabels = useMemo(() => {
    const s = new Set<string>();
    for (const h of hosts) for (const [k, v] of Object.entries(h.agent.labels ?? {})) s.add(`${k}=${v}`);
    return [...s].sort();
  }, [hosts]);

  const filtered = useMemo(() => {
    return hosts
      .filter(
        (h) =>
          status === 'all' ||
          (status === 'online' ? h.agent.status === 'online' : h.agent.status !== 'online'),
      )
      .filter((h) => {
        if (!label) return true;
        const [k, v] = label.split('=');
        return k !== undefined && h.agent.labels?.[k] === v;
      })
      .map((h) => {
        const hostHit = query && h.hostname.toLowerCase().includes(query.toLowerCase());
        const processes = h.processes
          .filter(
            (p) =>
              debug === 'any' ||
              (debug === 'on' ? p.remoteDebugEnabled === true : p.remoteDebugEnabled === false),
          )
          .filter((p) => hostHit || processMatches(p, query));
        return { host: h, processes, hostHit };
      })
      .filter(({ processes, hostHit }) =>
        !query && debug === 'any' ? true : processes.length > 0 || hostHit,
      );
  }, [hosts, status, label, debug, query]);

  const online = hosts.filter((h) => h.agent.status === 'online').length;
  const processCount = hosts.reduce((n, h) => n + h.processes.length, 0);
  const mayRequest = canDo(user.role, 'request:create');

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
            <span aria-live="polite">
              {hosts.length} hosts · {online} online · {processCount} Python processes
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

      <div
        className="mb-4 grid gap-3 sm:grid-cols-[1fr_auto_auto_auto]"
        role="search"
        aria-label="Filter the fleet"
      >
        <div className="relative">
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
            placeholder="Search host, pid, user, command line…"
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
            {allLabels.map((l) => (
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
          </NativeSelect>
        </div>
      </div>

      {error ? (
        <ErrorState error={error} onRetry={reload} title="Could not load the fleet" />
      ) : loading && !data ? (
        <LoadingRows rows={5} label="Loading the fleet" />
      ) : hosts.length === 0 ? (
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
      ) : filtered.length === 0 ? (
        <EmptyState title="Nothing matches these filters" icon={<SearchIcon />} />
      ) : (
        <div className="grid gap-4" data-testid="fleet-hosts">
          {filtered.map(({ host, processes }) => (
            <Card key={host.id} data-testid="host-card" data-hostname={host.hostname}>
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
                <span className="ml-auto">
                  <LabelList labels={host.agent.labels} />
                </span>
              </CardHeader>
              <CardContent>
                {processes.length === 0 ? (
                  <p className="py-3 text-sm text-muted-foreground">
                    No Python processes {host.processes.length ? 'match' : 'found on this host'}.
                  </p>
                ) : (
                  <Table aria-label={`Python processes on ${host.hostname}`}>
                    <THead>
                      <TR>
                        {mayRequest ? (
                          <TH className="w-8">
                            <span className="sr-only">Select</span>
                          </TH>
                        ) : null}
                        <TH>PID</TH>
                        <TH>User</TH>
                        <TH>Python</TH>
                        <TH>Remote debug</TH>
                        <TH>Container</TH>
                        <TH>Command line</TH>
                        <TH className="text-right">Threads</TH>
                      </TR>
                    </THead>
                    <TBody>
                      {processes.map((p) => {
                        const key = targetKey(host.agent.id, p);
                        const cmd = p.cmdline.join(' ');
                        return (
                          <TR
                            key={p.id}
                            data-testid="process-row"
                            data-state={selected.has(key) ? 'selected' : undefined}
                          >
                            {mayRequest ? (
                              <TD>
                                <Checkbox
                                  aria-label={`Select pid ${p.pid} on ${host.hostname}`}
                                  checked={selected.has(key)}
                                  onCheckedChange={(v) => toggle(key, v === true)}
                                />
                              </TD>
                            ) : null}
                            <TD className="font-mono tabular-nums whitespace-nowrap">
                              {p.pid}
                              {p.inContainer && p.nsPid !== p.pid ? (
                                <span className="text-muted-foreground"> ({p.nsPid} in ns)</span>
                              ) : null}
                            </TD>
                            <TD>{p.user ?? `uid ${p.uid}`}</TD>
                            <TD className="whitespace-nowrap">
                              {p.pythonVersion ?? <span className="text-muted-foreground">unknown</span>}
                              {p.freeThreaded ? (
                                <Badge variant="secondary" className="ml-1">
                                  free-threaded
                                </Badge>
                              ) : null}
                            </TD>
                            <TD>
                              {p.remoteDebugEnabled === true ? (
                                <Badge variant="success">on</Badge>
                              ) : p.remoteDebugEnabled === false ? (
                                <Badge variant="destructive">off</Badge>
                              ) : (
                                <Badge variant="muted" title={p.inspectError ?? undefined}>
                                  unknown
                                </Badge>
                              )}
                            </TD>
                            <TD className="max-w-40 truncate" title={p.container ?? undefined}>
                              {p.inContainer ? (
                                (p.container ?? 'yes')
                              ) : (
                                <span className="text-muted-foreground">—</span>
                              )}
                            </TD>
                            <TD className="max-w-md">
                              <code className="block truncate font-mono text-xs" title={cmd}>
                                {cmd}
                              </code>
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
                  </Table>
                )}
              </CardContent>
            </Card>
          ))}
        </div>
      )}
    </>
  );
}
