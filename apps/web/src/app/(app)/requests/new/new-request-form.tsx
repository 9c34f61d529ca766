'use client';
import { useRouter, useSearchParams } from 'next/navigation';
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { BookOpenIcon, CodeIcon, FilterIcon, ListIcon, SendIcon, ShieldCheckIcon } from 'lucide-react';
import { PageHeader } from '../../../../components/shell/app-shell';
import { CodeEditor } from '../../../../components/code-editor';
import { defaultsOf, SchemaForm, validateParams, type ParamValues } from '../../../../components/schema-form';
import { LabelList, RiskBadge } from '../../../../components/status';
import { Alert } from '../../../../components/ui/alert';
import { Badge } from '../../../../components/ui/badge';
import { Button } from '../../../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../../components/ui/card';
import { Checkbox } from '../../../../components/ui/checkbox';
import { Input, NativeSelect, Textarea } from '../../../../components/ui/input';
import { Field, Label } from '../../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../../components/ui/table';
import { Tabs, TabsContent, TabsList, TabsTrigger } from '../../../../components/ui/tabs';
import { api, ApiError, errorMessage, useApi } from '../../../../lib/client/api';
import { canDo, useUser } from '../../../../lib/client/session';
import type { Labels, ScriptSummary, TargetProcess } from '../../../../lib/client/types';

const CUSTOM_TEMPLATE = `# Runs inside the target process at its next safe point.
# \`params\` holds the request's parameters; print() output and \`result\` come back.
import sys

result = {"version": sys.version, "modules": len(sys.modules)}
print("hello from", sys.argv[0] if sys.argv else "?")
`;

type TargetMode = 'processes' | 'selector';
type CodeMode = 'library' | 'custom';

interface PolicyPreview {
  matched: number;
  policy: { id: string; name: string; description: string | null } | null;
  policies: { id: string; name: string }[];
  requiredApprovals: number;
  approverRoles: string[];
  allowCustomCode: boolean;
  approvalValidMinutes: number;
  customDenied: boolean;
}

const keyOf = (p: { agentId: string; pid: number; startTime: string }) =>
  `${p.agentId}:${p.pid}:${p.startTime}`;

function parseLabels(text: string): { labels: Labels; error: string | null } {
  const labels: Labels = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) return { labels, error: `"${part}" is not key=value` };
    labels[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return { labels, error: null };
}

function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

export function NewRequestForm() {
  const user = useUser();
  const router = useRouter();
  const search = useSearchParams();

  const processes = useApi<{ processes: TargetProcess[] }>('/api/fleet/processes?limit=2000');
  const scripts = useApi<{ scripts: ScriptSummary[] }>('/api/scripts');

  const [targetMode, setTargetMode] = useState<TargetMode>('processes');
  const [selected, setSelected] = useState<Set<string>>(
    () => new Set((search.get('targets') ?? '').split(',').filter(Boolean)),
  );
  const [procFilter, setProcFilter] = useState('');
  const [selLabels, setSelLabels] = useState('');
  const [selCmd, setSelCmd] = useState('');
  const [selUser, setSelUser] = useState('');
  const [selExe, setSelExe] = useState('');

  const [codeMode, setCodeMode] = useState<CodeMode>('library');
  const [scriptId, setScriptId] = useState<string>(search.get('script') ?? '');
  const [params, setParams] = useState<ParamValues>({});
  const [custom, setCustom] = useState(CUSTOM_TEMPLATE);
  const [reason, setReason] = useState('');
  const [concurrency, setConcurrency] = useState(1);
  const [maxFailures, setMaxFailures] = useState(1);
  const [budgetSeconds, setBudgetSeconds] = useState(30);
  const [pickupTimeoutSeconds, setPickupTimeoutSeconds] = useState(10);
  const [showErrors, setShowErrors] = useState(false);
  const [submitting, setSubmitting] = useState(false);
  const [submitError, setSubmitError] = useState<unknown>(null);

  const scriptList = useMemo(() => scripts.data?.scripts ?? [], [scripts.data]);
  const script = scriptList.find((s) => s.id === scriptId);
  useEffect(() => {
    if (!scriptId && scriptList[0]) setScriptId(scriptList[0].id);
  }, [scriptId, scriptList]);
  useEffect(() => {
    if (script) setParams(defaultsOf(script.paramsSchema));
  }, [script]);

  const procList = useMemo(() => processes.data?.processes ?? [], [processes.data]);
  const shownProcs = useMemo(() => {
    const q = procFilter.toLowerCase().trim();
    if (!q) return procList;
    return procList.filter((p) =>
      [
        p.hostname,
        String(p.pid),
        p.user ?? '',
        p.cmdline.join(' '),
        ...Object.entries(p.labels).map(([k, v]) => `${k}=${v}`),
      ]
        .join(' ')
        .toLowerCase()
        .includes(q),
    );
  }, [procList, procFilter]);

  const parsedLabels = parseLabels(selLabels);
  const selector = useMemo(() => {
    const process: Record<string, string> = {};
    if (selCmd.trim()) process.cmdlineContains = selCmd.trim();
    if (selUser.trim()) process.user = selUser.trim();
    if (selExe.trim()) process.exeContains = selExe.trim();
    return { labels: parsedLabels.labels, process };
  }, [selLabels, selCmd, selUser, selExe]);

  const targets = useMemo(() => {
    if (targetMode === 'processes') {
      const chosen = procList
        .filter((p) => selected.has(keyOf(p)))
        .map((p) => ({ agentId: p.agentId, pid: p.pid, startTime: p.startTime }));
      return chosen.length ? { type: 'processes' as const, processes: chosen } : null;
    }
    return parsedLabels.error ? null : { type: 'selector' as const, ...selector };
  }, [targetMode, procList, selected, selector, parsedLabels.error]);

  // Live selector preview.
  const debouncedSelector = useDebounced(JSON.stringify(selector), 350);
  const [preview, setPreview] = useState<{ count: number; processes: TargetProcess[] } | null>(null);
  const [previewError, setPreviewError] = useState<unknown>(null);
  const [previewLoading, setPreviewLoading] = useState(false);
  useEffect(() => {
    if (targetMode !== 'selector' || parsedLabels.error) return;
    let cancelled = false;
    setPreviewLoading(true);
    api<{ count: number; processes: TargetProcess[] }>('/api/fleet/preview', {
      method: 'POST',
      json: { ...JSON.parse(debouncedSelector), limit: 200 },
    }).then(
      (r) => {
        if (!cancelled) {
          setPreview(r);
          setPreviewError(null);
          setPreviewLoading(false);
        }
      },
      (e: unknown) => {
        if (!cancelled) {
          setPreviewError(e);
          setPreviewLoading(false);
        }
      },
    );
    return () => {
      cancelled = true;
    };
  }, [debouncedSelector, targetMode, parsedLabels.error]);

  // Which policy applies, recomputed as targets change.
  const policyKey = useDebounced(JSON.stringify({ targets, kind: codeMode }), 300);
  const [policy, setPolicy] = useState<PolicyPreview | null>(null);
  const [policyError, setPolicyError] = useState<unknown>(null);
  useEffect(() => {
    const body = JSON.parse(policyKey) as { targets: unknown; kind: CodeMode };
    if (!body.targets) {
      setPolicy(null);
      setPolicyError(null);
      return;
    }
    let cancelled = false;
    api<PolicyPreview>('/api/ui/policy-preview', { method: 'POST', json: body }).then(
      (r) => {
        if (!cancelled) {
          setPolicy(r);
          setPolicyError(null);
        }
      },
      (e: unknown) => {
        if (!cancelled) {
          setPolicy(null);
          setPolicyError(e);
        }
      },
    );
    return () => {
      cancelled = true;
    };
  }, [policyKey]);

  const paramErrors = script ? validateParams(script.paramsSchema, params) : {};
  const reasonError = reason.trim().length < 3 ? 'Say why this needs to run (at least 3 characters)' : null;
  const targetError = !targets
    ? targetMode === 'processes'
      ? 'Pick at least one process'
      : (parsedLabels.error ?? 'Enter a selector')
    : null;
  const codeError =
    codeMode === 'library'
      ? !script
        ? 'Choose a script'
        : Object.keys(paramErrors).length
          ? 'Fix the parameters'
          : null
      : custom.trim()
        ? null
        : 'Write some code';

  if (!canDo(user.role, 'request')) {
    return (
      <>
        <PageHeader title="New request" />
        <Alert variant="warning" title="Your role cannot file requests">
          You are signed in as <strong>{user.role}</strong>. Operators and admins file requests; ask one of
          them, or an admin to change your role.
        </Alert>
      </>
    );
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setShowErrors(true);
    setSubmitError(null);
    if (reasonError || targetError || codeError || !targets) return;
    setSubmitting(true);
    try {
      const body = {
        kind: codeMode,
        ...(codeMode === 'library'
          ? { scriptId: script!.id, code: script!.source, params }
          : { code: custom, params: {} }),
        targets,
        reason: reason.trim(),
        rollout: { concurrency, maxFailures },
        options: { inline: script?.inline ?? false, budgetSeconds, pickupTimeoutSeconds, backend: 'native' },
      };
      const r = await api<{ request: { id: string } }>('/api/requests', { method: 'POST', json: body });
      router.push(`/requests/${r.request.id}`);
    } catch (err) {
      setSubmitError(err);
      setSubmitting(false);
    }
  }

  const toggle = (k: string, on: boolean) =>
    setSelected((prev) => {
      const n = new Set(prev);
      if (on) n.add(k);
      else n.delete(k);
      return n;
    });

  return (
    <form onSubmit={submit} noValidate aria-label="New request">
      <PageHeader
        title="New request"
        description="Pick where, what and why. Nothing runs until the policy's approvals are in."
      />
      <div className="grid gap-5 lg:grid-cols-[minmax(0,1fr)_20rem]">
        <div className="grid min-w-0 gap-5">
          {/* 1. Targets */}
          <Card>
            <CardHeader>
              <CardTitle>1. Targets</CardTitle>
              <CardDescription>
                Explicit processes, or a selector resolved to processes at dispatch time.
              </CardDescription>
            </CardHeader>
            <CardContent>
              <Tabs value={targetMode} onValueChange={(v) => setTargetMode(v as TargetMode)}>
                <TabsList aria-label="How to pick targets">
                  <TabsTrigger value="processes">
                    <ListIcon aria-hidden="true" /> Processes
                  </TabsTrigger>
                  <TabsTrigger value="selector">
                    <FilterIcon aria-hidden="true" /> Selector
                  </TabsTrigger>
                </TabsList>
                <TabsContent value="processes">
                  <div className="mb-2 flex flex-wrap items-center gap-2">
                    <Label htmlFor="proc-filter" className="sr-only">
                      Filter processes
                    </Label>
                    <Input
                      id="proc-filter"
                      type="search"
                      placeholder="Filter by host, pid, user, command line, label…"
                      className="max-w-sm"
                      value={procFilter}
                      onChange={(e) => setProcFilter(e.target.value)}
                    />
                    <span className="text-sm text-muted-foreground" aria-live="polite">
                      {selected.size} selected
                    </span>
                  </div>
                  {processes.error ? (
                    <ErrorState error={processes.error} onRetry={processes.reload} />
                  ) : processes.loading && !processes.data ? (
                    <LoadingRows rows={3} />
                  ) : procList.length === 0 ? (
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
                          {shownProcs.map((p) => {
                            const k = keyOf(p);
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
                                  <code
                                    className="block truncate font-mono text-xs"
                                    title={p.cmdline.join(' ')}
                                  >
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
                </TabsContent>
                <TabsContent value="selector">
                  <div className="grid gap-3 sm:grid-cols-2">
                    <Field
                      id="sel-labels"
                      label="Host labels"
                      hint="Comma-separated key=value; all must match (e.g. env=prod,team=orders)"
                      error={parsedLabels.error}
                    >
                      <Input
                        id="sel-labels"
                        className="font-mono"
                        value={selLabels}
                        onChange={(e) => setSelLabels(e.target.value)}
                        placeholder="env=prod"
                      />
                    </Field>
                    <Field id="sel-cmd" label="Command line contains">
                      <Input
                        id="sel-cmd"
                        className="font-mono"
                        value={selCmd}
                        onChange={(e) => setSelCmd(e.target.value)}
                        placeholder="service.py"
                      />
                    </Field>
                    <Field id="sel-user" label="User is">
                      <Input id="sel-user" value={selUser} onChange={(e) => setSelUser(e.target.value)} />
                    </Field>
                    <Field id="sel-exe" label="Executable contains">
                      <Input
                        id="sel-exe"
                        className="font-mono"
                        value={selExe}
                        onChange={(e) => setSelExe(e.target.value)}
                        placeholder="python3.14"
                      />
                    </Field>
                  </div>
                  <div
                    className="mt-3 rounded-md border p-3"
                    aria-live="polite"
                    data-testid="selector-preview"
                  >
                    {previewError ? (
                      <ErrorState error={previewError} title="Preview failed" />
                    ) : !preview ? (
                      <p className="text-sm text-muted-foreground">
                        {previewLoading ? 'Resolving…' : 'Type a selector to see what it matches.'}
                      </p>
                    ) : (
                      <>
                        <p className="mb-2 text-sm font-medium">
                          Matches <span data-testid="selector-count">{preview.count}</span> process
                          {preview.count === 1 ? '' : 'es'} right now
                          {previewLoading ? (
                            <span className="text-muted-foreground"> (updating…)</span>
                          ) : null}
                        </p>
                        <ul className="grid max-h-48 gap-1 overflow-auto text-xs">
                          {preview.processes.map((p) => (
                            <li key={keyOf(p)} className="flex gap-2">
                              <span className="font-medium">{p.hostname}</span>
                              <span className="font-mono">pid {p.pid}</span>
                              <code className="truncate font-mono text-muted-foreground">
                                {p.cmdline.join(' ')}
                              </code>
                            </li>
                          ))}
                        </ul>
                      </>
                    )}
                  </div>
                </TabsContent>
              </Tabs>
              {showErrors && targetError ? (
                <p role="alert" className="mt-2 text-sm text-destructive">
                  {targetError}
                </p>
              ) : null}
            </CardContent>
          </Card>

          {/* 2. Code */}
          <Card>
            <CardHeader>
              <CardTitle>2. What to run</CardTitle>
              <CardDescription>
                A reviewed library script with typed parameters, or custom code where the policy allows it.
              </CardDescription>
            </CardHeader>
            <CardContent>
              <Tabs value={codeMode} onValueChange={(v) => setCodeMode(v as CodeMode)}>
                <TabsList aria-label="Kind of code">
                  <TabsTrigger value="library">
                    <BookOpenIcon aria-hidden="true" /> Library script
                  </TabsTrigger>
                  <TabsTrigger value="custom">
                    <CodeIcon aria-hidden="true" /> Custom code
                  </TabsTrigger>
                </TabsList>
                <TabsContent value="library" className="grid gap-4">
                  {scripts.error ? (
                    <ErrorState error={scripts.error} onRetry={scripts.reload} />
                  ) : !scripts.data ? (
                    <LoadingRows rows={2} />
                  ) : (
                    <>
                      <Field id="script" label="Script">
                        <NativeSelect
                          id="script"
                          value={scriptId}
                          onChange={(e) => setScriptId(e.target.value)}
                        >
                          {scriptList.map((s) => (
                            <option key={s.id} value={s.id}>
                              {s.title} ({s.id})
                            </option>
                          ))}
                        </NativeSelect>
                      </Field>
                      {script ? (
                        <>
                          <div className="flex flex-wrap items-center gap-2 text-sm">
                            <RiskBadge risk={script.risk} />
                            {script.readOnly ? (
                              <Badge variant="secondary">read-only</Badge>
                            ) : (
                              <Badge variant="warning">changes state</Badge>
                            )}
                            <span className="text-muted-foreground">{script.description}</span>
                          </div>
                          <fieldset className="grid gap-2 rounded-md border p-3">
                            <legend className="px-1 text-sm font-medium">
                              Parameters (sent as data, never pasted into the code)
                            </legend>
                            <SchemaForm
                              schema={script.paramsSchema}
                              values={params}
                              onChange={setParams}
                              errors={showErrors ? paramErrors : {}}
                              idPrefix="param"
                            />
                          </fieldset>
                          <details className="rounded-md border">
                            <summary className="cursor-pointer px-3 py-2 text-sm font-medium">
                              Show the script&apos;s source
                            </summary>
                            <div className="p-2">
                              <CodeEditor
                                key={script.id}
                                value={script.source}
                                readOnly
                                label={`Source of ${script.id}`}
                              />
                            </div>
                          </details>
                        </>
                      ) : null}
                    </>
                  )}
                </TabsContent>
                <TabsContent value="custom" className="grid gap-2">
                  {policy && !policy.allowCustomCode ? (
                    <Alert variant="warning" title="The policy for these targets allows library scripts only">
                      Filing custom code will be refused. Pick a library script, or narrow the targets.
                    </Alert>
                  ) : null}
                  <Label id="custom-code-label">Python code</Label>
                  <CodeEditor
                    value={custom}
                    onChange={setCustom}
                    label="Custom Python code"
                    testId="custom-code"
                  />
                </TabsContent>
              </Tabs>
              {showErrors && codeError ? (
                <p role="alert" className="mt-2 text-sm text-destructive">
                  {codeError}
                </p>
              ) : null}
            </CardContent>
          </Card>

          {/* 3. Why and how */}
          <Card>
            <CardHeader>
              <CardTitle>3. Reason and rollout</CardTitle>
            </CardHeader>
            <CardContent className="grid gap-4">
              <Field
                id="reason"
                label={
                  <>
                    Reason <span className="text-destructive">*</span>
                  </>
                }
                hint="Approvers and auditors read this. Link the incident or ticket."
                error={showErrors ? reasonError : null}
              >
                <Textarea
                  id="reason"
                  required
                  aria-invalid={showErrors && reasonError ? true : undefined}
                  value={reason}
                  onChange={(e) => setReason(e.target.value)}
                  placeholder="INC-1234: orders failing with opaque errors; need DEBUG on demo.orders for 10 minutes"
                />
              </Field>
              <div className="grid gap-3 sm:grid-cols-4">
                <Field id="concurrency" label="Concurrency" hint="Targets at once">
                  <Input
                    id="concurrency"
                    type="number"
                    min={1}
                    max={1000}
                    value={concurrency}
                    onChange={(e) => setConcurrency(Math.max(1, Number(e.target.value) || 1))}
                  />
                </Field>
                <Field id="max-failures" label="Stop after failures">
                  <Input
                    id="max-failures"
                    type="number"
                    min={1}
                    max={10000}
                    value={maxFailures}
                    onChange={(e) => setMaxFailures(Math.max(1, Number(e.target.value) || 1))}
                  />
                </Field>
                <Field id="budget" label="Time budget (s)" hint="In the target">
                  <Input
                    id="budget"
                    type="number"
                    min={1}
                    max={3600}
                    value={budgetSeconds}
                    onChange={(e) => setBudgetSeconds(Math.max(1, Number(e.target.value) || 1))}
                  />
                </Field>
                <Field id="pickup" label="Pickup timeout (s)" hint="Wait for a safe point">
                  <Input
                    id="pickup"
                    type="number"
                    min={1}
                    max={600}
                    value={pickupTimeoutSeconds}
                    onChange={(e) => setPickupTimeoutSeconds(Math.max(1, Number(e.target.value) || 1))}
                  />
                </Field>
              </div>
            </CardContent>
          </Card>
        </div>

        {/* Summary + policy */}
        <aside className="lg:sticky lg:top-4 lg:self-start">
          <Card>
            <CardHeader>
              <CardTitle className="flex items-center gap-2">
                <ShieldCheckIcon aria-hidden="true" className="size-4" /> Policy
              </CardTitle>
            </CardHeader>
            <CardContent className="grid gap-3 text-sm" aria-live="polite" data-testid="policy-preview">
              {!targets ? (
                <p className="text-muted-foreground">Pick targets to see which policy applies.</p>
              ) : policyError ? (
                <Alert
                  variant="destructive"
                  title={
                    policyError instanceof ApiError && policyError.code === 'POLICY_DENIED'
                      ? 'No policy allows this'
                      : 'Could not resolve the policy'
                  }
                >
                  {errorMessage(policyError)}
                </Alert>
              ) : !policy ? (
                <p className="text-muted-foreground">Resolving…</p>
              ) : (
                <>
                  <div>
                    <div className="text-xs text-muted-foreground">Applies</div>
                    <div className="font-medium" data-testid="policy-name">
                      {policy.policies.map((p) => p.name).join(', ') || '—'}
                    </div>
                  </div>
                  <div>
                    <div className="text-xs text-muted-foreground">Approvals needed</div>
                    <div className="text-lg font-semibold" data-testid="policy-approvals">
                      {policy.requiredApprovals === 0 ? 'none (runs at once)' : policy.requiredApprovals}
                    </div>
                    {policy.requiredApprovals > 0 ? (
                      <div className="text-xs text-muted-foreground">
                        from {policy.approverRoles.join(' or ')}, not you
                      </div>
                    ) : null}
                  </div>
                  <div className="flex flex-wrap gap-1">
                    <Badge variant={policy.allowCustomCode ? 'secondary' : 'outline'}>
                      {policy.allowCustomCode ? 'custom code allowed' : 'library only'}
                    </Badge>
                    <Badge variant="outline">approval valid {policy.approvalValidMinutes} min</Badge>
                  </div>
                  <div className="text-xs text-muted-foreground">
                    {policy.matched} target process{policy.matched === 1 ? '' : 'es'} now
                  </div>
                  {policy.customDenied ? (
                    <Alert variant="destructive" title="Custom code is not allowed here" />
                  ) : null}
                </>
              )}
              {targetMode === 'selector' && Object.keys(parsedLabels.labels).length ? (
                <div>
                  <div className="text-xs text-muted-foreground">Selector labels</div>
                  <LabelList labels={parsedLabels.labels} />
                </div>
              ) : null}
              {submitError ? (
                <Alert variant="destructive" title="The request was not filed">
                  {errorMessage(submitError)}
                </Alert>
              ) : null}
              <Button type="submit" disabled={submitting} className="w-full">
                <SendIcon aria-hidden="true" /> {submitting ? 'Filing…' : 'File request'}
              </Button>
            </CardContent>
          </Card>
        </aside>
      </div>
    </form>
  );
}
