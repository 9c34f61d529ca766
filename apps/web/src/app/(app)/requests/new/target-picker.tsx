'use client';
import { useEffect, useMemo, useRef, useState } from 'react';
import { Controller, useWatch, type Control, type UseFormRegister } from 'react-hook-form';
import { FilterIcon, ListIcon, XIcon } from 'lucide-react';
import type { FleetHost, FleetProcess, ProcessMatch, TargetProcess } from '@pyreach/protocol/api';
import { Badge } from '../../../../components/ui/badge';
import { Button } from '../../../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../../components/ui/card';
import { Checkbox } from '../../../../components/ui/checkbox';
import { Input } from '../../../../components/ui/input';
import { Field, Label } from '../../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../../components/ui/states';
import { TBody, TD, TH, THead, TR } from '../../../../components/ui/table';
import { Tabs, TabsContent, TabsList, TabsTrigger } from '../../../../components/ui/tabs';
import { api, useCall, useCancellable } from '../../../../lib/client/api';
import {
  containerOf,
  middleEllipsis,
  plural,
  processName,
  scriptOf,
  tailPath,
} from '../../../../lib/client/process';
import { useDebounced } from '../../../../lib/client/use-debounced';
import { parseProcessKey, processKey, selectorOf, type RequestDraft, type TargetMode } from './request-draft';

interface Props {
  control: Control<RequestDraft>;
  register: UseFormRegister<RequestDraft>;
  error: string | null;
}

/** 1. Targets: explicit processes, or a selector resolved to processes at dispatch time. */
export function TargetPicker({ control, register, error }: Props) {
  const mode = useWatch({ control, name: 'targetMode' });
  return (
    <Card>
      <CardHeader>
        <CardTitle>1. Targets</CardTitle>
        <CardDescription>
          Explicit processes, or a selector resolved to processes at dispatch time.
        </CardDescription>
      </CardHeader>
      <CardContent>
        <Controller
          control={control}
          name="targetMode"
          render={({ field }) => (
            <Tabs value={field.value} onValueChange={(v) => field.onChange(v as TargetMode)}>
              <TabsList aria-label="How to pick targets">
                <TabsTrigger value="processes">
                  <ListIcon aria-hidden="true" /> Processes
                </TabsTrigger>
                <TabsTrigger value="selector">
                  <FilterIcon aria-hidden="true" /> Selector
                </TabsTrigger>
              </TabsList>
              <TabsContent value="processes">
                <ProcessTable control={control} />
              </TabsContent>
              <TabsContent value="selector">
                <SelectorFields control={control} register={register} active={mode === 'selector'} />
              </TabsContent>
            </Tabs>
          )}
        />
        {error ? (
          <p role="alert" className="mt-2 text-sm text-destructive">
            {error}
          </p>
        ) : null}
      </CardContent>
    </Card>
  );
}

/** A process as the picker shows it: its name first, then where it runs and how it was started. */
interface Candidate {
  key: string;
  name: string;
  hostname: string;
  pid: number;
  user: string | null;
  cmdline: string;
  container: string | null;
  remoteDebugEnabled: boolean | null;
}

function fromFleet(host: FleetHost, p: FleetProcess): Candidate {
  return {
    key: processKey({ agentId: host.agent.id, pid: p.pid, startTime: p.startTime }),
    name: processName(p),
    hostname: host.hostname,
    pid: p.pid,
    user: p.user ?? `uid ${p.uid}`,
    cmdline: p.cmdline.join(' '),
    container: containerOf(p),
    remoteDebugEnabled: p.remoteDebugEnabled,
  };
}

function fromTarget(p: TargetProcess): Candidate {
  const pod = p.pod
    ? `${p.pod.namespace}/${p.pod.name}${p.pod.containerName ? ` · ${p.pod.containerName}` : ''}`
    : null;
  return {
    key: processKey(p),
    name: scriptOf(p.cmdline) ?? pod ?? (tailPath(p.exe, 1) || `pid ${p.pid}`),
    hostname: p.hostname,
    pid: p.pid,
    user: p.user,
    cmdline: p.cmdline.join(' '),
    container: pod,
    remoteDebugEnabled: p.remoteDebugEnabled,
  };
}

const PAGE = 25;

/**
 * Explicit processes, found on the server: the search box and the pages are the fleet page's own query
 * (GET /api/ui/fleet), so 5,000 processes cost one page. What is chosen stays listed above the results
 * whatever the search shows. Keyboard: ↓ from the search box to the results, ↑/↓ between them, Space
 * toggles; Enter in the search box picks the only match (and never files the form).
 */
function ProcessTable({ control }: Pick<Props, 'control'>) {
  const [filter, setFilter] = useState('');
  const [offset, setOffset] = useState(0);
  const q = useDebounced(filter.trim(), 250);
  useEffect(() => setOffset(0), [q]);
  const page = useCall('uiFleet', {
    query: { ...(q ? { q } : {}), ...(offset ? { offset } : {}), limit: PAGE },
  });
  const shown = useMemo(
    () => (page.data?.hosts ?? []).flatMap((h) => h.processes.map((p) => fromFleet(h, p))),
    [page.data],
  );
  const total = page.data?.page.total ?? 0;
  // What each chosen key looks like, kept when the search moves on (a key from ?targets= is looked up once).
  const [known, setKnown] = useState<Map<string, Candidate>>(new Map());
  const selected = useWatch({ control, name: 'selected' });
  const unknown = selected.filter((k) => !known.has(k) && parseProcessKey(k));
  const agents = [...new Set(unknown.map((k) => parseProcessKey(k)!.agentId))].sort();
  const lookup = useCancellable(agents.length ? agents.join(',') : null, (signal) =>
    Promise.all(agents.map((agentId) => api('listProcesses', { query: { agentId } }, { signal }))),
  );
  useEffect(() => {
    const found = lookup.data;
    if (!found) return;
    setKnown((prev) => {
      const next = new Map(prev);
      for (const r of found) for (const p of r.processes) next.set(processKey(p), fromTarget(p));
      return next;
    });
  }, [lookup.data]);
  const list = useRef<HTMLDivElement>(null);
  const boxes = () => [...(list.current?.querySelectorAll<HTMLElement>('[role="checkbox"]') ?? [])];

  return (
    <Controller
      control={control}
      name="selected"
      render={({ field }) => {
        const chosen = new Set(field.value);
        const toggle = (c: Candidate, on: boolean) => {
          if (on) setKnown((prev) => new Map(prev).set(c.key, c));
          field.onChange(on ? [...new Set([...field.value, c.key])] : field.value.filter((x) => x !== c.key));
        };
        const remove = (k: string) => field.onChange(field.value.filter((x) => x !== k));
        return (
          <>
            {field.value.length ? (
              <ul className="mb-3 grid gap-1" aria-label="Chosen processes" data-testid="picked-targets">
                {field.value.map((k) => {
                  const c = known.get(k);
                  const parsed = parseProcessKey(k);
                  return (
                    <li
                      key={k}
                      className="flex min-w-0 items-center gap-2 rounded-md border bg-muted/40 px-2 py-1 text-sm"
                      data-testid="picked-target"
                    >
                      <span className="min-w-0 flex-1 truncate">
                        <span className="font-medium">{c?.name ?? `pid ${parsed?.pid ?? '?'}`}</span>
                        <span className="text-muted-foreground">
                          {' '}
                          · {c ? `${c.hostname} · pid ${c.pid}` : parsed ? `agent ${parsed.agentId}` : k}
                          {c?.user ? ` · ${c.user}` : ''}
                          {c?.container ? ` · ${c.container}` : ''}
                        </span>
                      </span>
                      <Button
                        type="button"
                        variant="ghost"
                        size="sm"
                        aria-label={`Remove ${c?.name ?? k}${c ? ` (pid ${c.pid} on ${c.hostname})` : ''}`}
                        onClick={() => remove(k)}
                      >
                        <XIcon aria-hidden="true" />
                      </Button>
                    </li>
                  );
                })}
              </ul>
            ) : null}
            <div className="mb-2 flex flex-wrap items-center gap-2">
              <Label htmlFor="proc-filter" className="sr-only">
                Search processes
              </Label>
              <Input
                id="proc-filter"
                type="search"
                placeholder="Search host, pid, user, script, command line, pod…"
                className="max-w-sm"
                value={filter}
                aria-controls="proc-results"
                onChange={(e) => setFilter(e.target.value)}
                onKeyDown={(e) => {
                  if (e.key === 'ArrowDown') {
                    e.preventDefault();
                    boxes()[0]?.focus();
                  } else if (e.key === 'Enter') {
                    e.preventDefault();
                    const only = shown.length === 1 && total === 1 && filter.trim() === q ? shown[0] : null;
                    if (only && !chosen.has(only.key)) toggle(only, true);
                  }
                }}
              />
              <span className="text-sm text-muted-foreground" aria-live="polite" data-testid="picked-count">
                {field.value.length} selected
              </span>
            </div>
            {page.error ? (
              <ErrorState error={page.error} onRetry={page.reload} />
            ) : page.loading && !page.data ? (
              <LoadingRows rows={3} />
            ) : page.data && page.data.totals.processes === 0 ? (
              <EmptyState title="No Python processes known">
                No agent has reported a Python process yet.
              </EmptyState>
            ) : shown.length === 0 ? (
              <EmptyState title="No process matches this search" />
            ) : (
              <div
                ref={list}
                id="proc-results"
                className="max-h-96 overflow-auto rounded-md border"
                aria-busy={page.loading}
                onKeyDown={(e) => {
                  if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
                  const all = boxes();
                  const i = all.indexOf(document.activeElement as HTMLElement);
                  if (i < 0) return;
                  e.preventDefault();
                  if (e.key === 'ArrowUp' && i === 0) document.getElementById('proc-filter')?.focus();
                  else
                    all[Math.min(Math.max(i + (e.key === 'ArrowDown' ? 1 : -1), 0), all.length - 1)]?.focus();
                }}
              >
                <table className="w-full table-fixed text-sm" aria-label="Processes to target">
                  <THead>
                    <TR>
                      <TH className="w-10">
                        <span className="sr-only">Select</span>
                      </TH>
                      <TH>Process</TH>
                      <TH className="w-36">Host · PID</TH>
                      <TH className="w-28">User</TH>
                      <TH className="w-20">Debug</TH>
                    </TR>
                  </THead>
                  <TBody>
                    {shown.map((c) => (
                      <TR
                        key={c.key}
                        data-testid="picker-row"
                        data-state={chosen.has(c.key) ? 'selected' : undefined}
                      >
                        <TD>
                          <Checkbox
                            aria-label={`Target ${c.name}, pid ${c.pid} on ${c.hostname}`}
                            checked={chosen.has(c.key)}
                            onCheckedChange={(v) => toggle(c, v === true)}
                          />
                        </TD>
                        <TD className="min-w-0">
                          <span className="block truncate font-medium" data-testid="picker-name">
                            {c.name}
                          </span>
                          <code
                            className="block truncate font-mono text-xs text-muted-foreground"
                            title={c.cmdline}
                            data-testid="picker-cmdline"
                          >
                            {middleEllipsis(c.cmdline, 40)}
                          </code>
                          {c.container ? (
                            <span
                              className="block truncate text-xs text-muted-foreground"
                              title={c.container}
                            >
                              {c.container}
                            </span>
                          ) : null}
                        </TD>
                        <TD className="truncate" title={`${c.hostname} · pid ${c.pid}`}>
                          {c.hostname}
                          <span className="block font-mono text-xs text-muted-foreground">pid {c.pid}</span>
                        </TD>
                        <TD className="truncate" title={c.user ?? undefined}>
                          {c.user ?? '—'}
                        </TD>
                        <TD>
                          {c.remoteDebugEnabled === false ? (
                            <Badge variant="destructive">off</Badge>
                          ) : c.remoteDebugEnabled ? (
                            <Badge variant="success">on</Badge>
                          ) : (
                            <Badge variant="muted">?</Badge>
                          )}
                        </TD>
                      </TR>
                    ))}
                  </TBody>
                </table>
              </div>
            )}
            {page.data && total > 0 ? (
              <nav className="mt-2 flex items-center gap-2" aria-label="Process pages">
                <Button
                  type="button"
                  variant="outline"
                  size="sm"
                  disabled={offset === 0}
                  onClick={() => setOffset(Math.max(offset - PAGE, 0))}
                >
                  Previous
                </Button>
                <Button
                  type="button"
                  variant="outline"
                  size="sm"
                  disabled={offset + PAGE >= total}
                  onClick={() => setOffset(offset + PAGE)}
                >
                  Next
                </Button>
                <span className="text-xs text-muted-foreground" data-testid="picker-range">
                  {Math.min(offset + 1, total)}–{Math.min(offset + PAGE, total)} of{' '}
                  {plural(total, 'process', 'processes')}
                  {q ? ' matching' : ''}
                </span>
              </nav>
            ) : null}
          </>
        );
      }}
    />
  );
}

function SelectorFields({
  control,
  register,
  active,
}: Pick<Props, 'control' | 'register'> & { active: boolean }) {
  const selector = useWatch({ control, name: 'selector' });
  const parsed = selectorOf({ selector });
  return (
    <>
      <div className="grid gap-3 sm:grid-cols-2">
        <Field
          id="sel-labels"
          label="Host labels"
          hint="Comma-separated key=value; all must match (e.g. env=prod,team=orders)"
          error={parsed.labels.error}
        >
          <Input
            id="sel-labels"
            className="font-mono"
            placeholder="env=prod"
            {...register('selector.labels')}
          />
        </Field>
        <Field id="sel-cmd" label="Command line contains">
          <Input
            id="sel-cmd"
            className="font-mono"
            placeholder="service.py"
            {...register('selector.cmdlineContains')}
          />
        </Field>
        <Field id="sel-user" label="User is">
          <Input id="sel-user" {...register('selector.user')} />
        </Field>
        <Field id="sel-exe" label="Executable contains">
          <Input
            id="sel-exe"
            className="font-mono"
            placeholder="python3.14"
            {...register('selector.exeContains')}
          />
        </Field>
      </div>
      <fieldset className="mt-3 rounded-md border p-3">
        <legend className="px-1 text-sm font-medium">Kubernetes pod</legend>
        <p className="mb-2 text-xs text-muted-foreground">
          Exact values, as the agents report them; any term here leaves host processes out. Pod facts choose
          targets only: the policy follows the hosts&apos; labels.
        </p>
        <div className="grid gap-3 sm:grid-cols-2">
          <Field id="sel-namespace" label="Namespace">
            <Input
              id="sel-namespace"
              className="font-mono"
              placeholder="shop"
              {...register('selector.namespace')}
            />
          </Field>
          <Field id="sel-pod-labels" label="Pod labels" hint="key=value, comma-separated; all must match">
            <Input
              id="sel-pod-labels"
              className="font-mono"
              placeholder="app=checkout"
              {...register('selector.podLabels')}
            />
          </Field>
          <Field id="sel-container" label="Container">
            <Input
              id="sel-container"
              className="font-mono"
              placeholder="web"
              {...register('selector.container')}
            />
          </Field>
          <Field id="sel-workload" label="Workload" hint="Kind/name or name (e.g. Deployment/checkout)">
            <Input
              id="sel-workload"
              className="font-mono"
              placeholder="Deployment/checkout"
              {...register('selector.workload')}
            />
          </Field>
        </div>
        {parsed.podError ? (
          <p role="alert" className="mt-2 text-sm text-destructive" data-testid="pod-error">
            {parsed.podError}
          </p>
        ) : null}
      </fieldset>
      <SelectorPreview
        query={
          active && !parsed.labels.error && !parsed.podError
            ? { labels: parsed.labels.labels, process: parsed.process }
            : null
        }
      />
    </>
  );
}

/** What the selector matches right now, re-resolved a moment after typing stops. */
function SelectorPreview({
  query,
}: {
  query: { labels: Record<string, string>; process: ProcessMatch } | null;
}) {
  const key = useDebounced(query ? JSON.stringify(query) : null, 350);
  const preview = useCancellable(key, (signal) =>
    api('previewSelector', { body: { ...JSON.parse(key!), limit: 200 } }, { signal }),
  );
  return (
    <div className="mt-3 rounded-md border p-3" aria-live="polite" data-testid="selector-preview">
      {preview.error ? (
        <ErrorState error={preview.error} title="Preview failed" />
      ) : !preview.data ? (
        <p className="text-sm text-muted-foreground">
          {preview.loading ? 'Resolving…' : 'Type a selector to see what it matches.'}
        </p>
      ) : (
        <>
          <p className="mb-2 text-sm font-medium">
            Matches <span data-testid="selector-count">{preview.data.count}</span> process
            {preview.data.count === 1 ? '' : 'es'} right now
            {preview.loading ? <span className="text-muted-foreground"> (updating…)</span> : null}
          </p>
          <ul className="grid max-h-48 gap-1 overflow-auto text-xs">
            {preview.data.processes.map((p) => (
              <li key={processKey(p)} className="flex gap-2">
                <span className="font-medium">{p.hostname}</span>
                <span className="font-mono">pid {p.pid}</span>
                {p.pod ? (
                  <span className="whitespace-nowrap" data-testid="preview-pod">
                    {p.pod.namespace}/{p.pod.name}
                    {p.pod.containerName ? ` · ${p.pod.containerName}` : ''}
                  </span>
                ) : null}
                <code className="truncate font-mono text-muted-foreground">{p.cmdline.join(' ')}</code>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
