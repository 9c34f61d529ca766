'use client';
import { CodeEditor } from '../code-editor';
import { CodeBlock } from '../ui/code-block';
import { Badge } from '../ui/badge';
import type { RequestRow, ScriptSummary, Targets } from '@pyreach/protocol/api';
import { formatLabels } from '../../lib/client/labels';

/** Exactly what will run: the library source (or the custom code) and, beside it, the parameters as data. */
export function CodeAndParams({ request, script }: { request: RequestRow; script?: ScriptSummary }) {
  const params = request.params;
  const entries = Object.entries(params);
  return (
    <div className="grid gap-3 xl:grid-cols-[minmax(0,1fr)_18rem]">
      <div className="grid min-w-0 gap-1">
        <div className="flex flex-wrap items-center gap-2 text-xs text-muted-foreground">
          {request.kind === 'library' ? (
            <>
              <Badge variant="secondary">library</Badge>
              <span className="font-mono">{request.scriptId}</span>
              {script && script.source !== request.code ? (
                <Badge variant="warning">differs from the current library version</Badge>
              ) : null}
            </>
          ) : (
            <Badge variant="warning">custom code</Badge>
          )}
          <span
            className="ml-auto font-mono"
            title="Content hash over code + parameters + targets (what approvals bind to)"
          >
            sha256 {request.contentHash.slice(0, 16)}…
          </span>
        </div>
        <CodeEditor
          key={`${request.id}:${request.revision}`}
          value={request.code}
          readOnly
          label="Code that will run"
          maxHeight="24rem"
          minHeight="6rem"
          testId="request-code"
        />
      </div>
      <div className="grid content-start gap-1">
        <div className="text-xs font-medium text-muted-foreground">
          Parameters (passed as data as `params`)
        </div>
        {entries.length === 0 ? (
          <p className="rounded-md border p-3 text-sm text-muted-foreground">none</p>
        ) : (
          <dl className="grid gap-1 rounded-md border p-3 text-sm" data-testid="request-params">
            {entries.map(([k, v]) => (
              <div key={k} className="grid grid-cols-[auto_1fr] gap-2">
                <dt className="font-mono text-xs text-muted-foreground">{k}</dt>
                <dd className="font-mono text-xs break-all">{JSON.stringify(v)}</dd>
              </div>
            ))}
          </dl>
        )}
        <CodeBlock label="As JSON" maxHeight="max-h-40">
          {JSON.stringify(params, null, 2)}
        </CodeBlock>
      </div>
    </div>
  );
}

/** One line per target a person reads: host and pid, or the selector in words. */
export function describeTargets(targets: Targets, hostnames: Record<string, string> = {}): string[] {
  if (targets.type === 'processes')
    return targets.processes.map((p) => `${hostnames[p.agentId] ?? p.agentId.slice(0, 8)} · pid ${p.pid}`);
  const { pod, ...match } = targets.process;
  const podWords = pod
    ? [
        pod.namespace && `namespace ${pod.namespace}`,
        pod.labels && Object.keys(pod.labels).length && `pod labels ${formatLabels(pod.labels, ', ')}`,
        pod.container && `container ${pod.container}`,
        pod.workload && `workload ${pod.workload.kind ? `${pod.workload.kind}/` : ''}${pod.workload.name}`,
      ].filter(Boolean)
    : [];
  const proc = [
    ...Object.entries(match).map(([k, v]) => `${k}: ${v}`),
    ...(pod ? [`pod: ${podWords.join(', ') || 'any pod'}`] : []),
  ].join(', ');
  return [`selector: ${formatLabels(targets.labels, ', ') || 'any host'}${proc ? ` · ${proc}` : ''}`];
}
