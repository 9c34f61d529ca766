'use client';
import { useMemo, useState } from 'react';
import { Controller, useWatch, type Control, type UseFormRegister } from 'react-hook-form';
import { FilterIcon, ListIcon } from 'lucide-react';
import type { ProcessMatch, TargetProcess } from '@pyreach/protocol/api';
import { Badge } from '../../../../components/ui/badge';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../../components/ui/card';
import { Checkbox } from '../../../../components/ui/checkbox';
import { Input } from '../../../../components/ui/input';
import { Field, Label } from '../../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../../components/ui/table';
import { Tabs, TabsContent, TabsList, TabsTrigger } from '../../../../components/ui/tabs';
import { api, useCancellable, type Resource } from '../../../../lib/client/api';
import { useDebounced } from '../../../../lib/client/use-debounced';
import { processKey, selectorOf, type RequestDraft, type TargetMode } from './request-draft';

interface Props {
  control: Control<RequestDraft>;
  register: UseFormRegister<RequestDraft>;
  processes: Resource<{ processes: TargetProcess[] }>;
  error: string | null;
}

/** 1. Targets: explicit processes, or a selector resolved to processes at dispatch time. */
export function TargetPicker({ control, register, processes, error }: Props) {
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
                <ProcessTable control={control} processes={processes} />
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

function matches(p: TargetProcess, q: string): boolean {
  return [
    p.hostname,
    String(p.pid),
    p.user ?? '',
    p.cmdline.join(' '),
    ...Object.entries(p.labels).map(([k, v]) => `${k}=${v}`),
  ]
    .join(' ')
    .toLowerCase()
    .includes(q);
}

function ProcessTable({ control, processes }: Pick<Props, 'control' | 'processes'>) {
  const [filter, setFilter] = useState('');
  const list = useMemo(() => processes.data?.processes ?? [], [processes.data]);
  const shown = useMemo(() => {
    const q = filter.toLowerCase().trim();
    return q ? list.filter((p) => matches(p, q)) : list;
  }, [list, filter]);
  return (
    <Controller
      control={control}
      name="selected"
      render={({ field }) => {
        const selected = new Set(field.value);
        const toggle = (k: string, on: boolean) =>
          field.onChange(on ? [...selected, k] : field.value.filter((x) => x !== k));
        return (
          <>
            <div className="mb-2 flex flex-wrap items-center gap-2">
              <Label htmlFor="proc-filter" className="sr-only">
                Filter processes
              </Label>
              <Input
                id="proc-filter"
                type="search"
                placeholder="Filter by host, pid, user, command line, label…"
                className="max-w-sm"
                value={filter}
                onChange={(e) => setFilter(e.target.value)}
              />
              <span className="text-sm text-muted-foreground" aria-live="polite">
                {selected.size} selected
              </span>
            </div>
            {processes.error ? (
              <ErrorState error={processes.error} onRetry={processes.reload} />
            ) : processes.loading && !processes.data ? (
              <LoadingRows rows={3} />
            ) : list.length === 0 ? (
              <EmptyState title="No Python processes known">
                No agent has reported a Python process yet.
              </EmptyState>
            ) : (
              <div className="max-h-80 overflow-auto rounded-md border">
                <Table aria-label="Processes to target">
                  <THead>
                    <TR>
                      <TH className="w-8">
                        <span className="sr-only">Select</span>
                      </TH>
                      <TH>Host</TH>
                      <TH>PID</TH>
                      <TH>User</TH>
                      <TH>Python</TH>
                      <TH>Debug</TH>
                      <TH>Command line</TH>
                    </TR>
                  </THead>
                  <TBody>
                    {shown.map((p) => {
                      const k = processKey(p);
                      return (
                        <TR key={k} data-state={selected.has(k) ? 'selected' : undefined}>
                          <TD>
                            <Checkbox
                              aria-label={`Target pid ${p.pid} on ${p.hostname}`}
                              checked={selected.has(k)}
                              onCheckedChange={(v) => toggle(k, v === true)}
                            />
                          </TD>
                          <TD className="whitespace-nowrap">{p.hostname}</TD>
                          <TD className="font-mono">{p.pid}</TD>
                          <TD>{p.user ?? '—'}</TD>
                          <TD>{p.pythonVersion ?? '?'}</TD>
                          <TD>
                            {p.remoteDebugEnabled === false ? (
                              <Badge variant="destructive">off</Badge>
                            ) : p.remoteDebugEnabled ? (
                              <Badge variant="success">on</Badge>
                            ) : (
                              <Badge variant="muted">?</Badge>
                            )}
                          </TD>
                          <TD className="max-w-xs">
                            <code className="block truncate font-mono text-xs" title={p.cmdline.join(' ')}>
                              {p.cmdline.join(' ')}
                            </code>
                          </TD>
                        </TR>
                      );
                    })}
                  </TBody>
                </Table>
              </div>
            )}
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
