'use client';
/**
 * A request's results by state (issue 16 item 4): identical outcomes grouped, one compact row per target with
 * state filters and pages (100+ targets), "retry the failed ones", and an output box that marks the cut in place,
 * copies, expands and downloads the whole stored output. The request detail carries a preview of each output
 * (OUTPUT_PREVIEW_BYTES); Expand and Copy read the whole of it from the download when it is one.
 */
import Link from 'next/link';
import { useCallback, useEffect, useMemo, useState, type ReactNode } from 'react';
import { CopyIcon, DownloadIcon, Maximize2Icon, Minimize2Icon, RotateCcwIcon } from 'lucide-react';
import type { ExecutionDetail } from '@pyreach/protocol/api';
import {
  describeGroup,
  firstLine,
  groupIdenticalOutcomes,
  retryable,
  splitAtCut,
} from '@pyreach/protocol/results';
import { EXECUTION, ExecutionState, executionStateCounts } from '@pyreach/protocol/states';
import { displayText, encodeBytes } from '@pyreach/protocol/text';
import { processName } from '../../lib/client/process';
import { ExecutionBadge } from '../status';
import { Button } from '../ui/button';
import { SafeTextView } from '../ui/code-block';

/** Rows per page of the targets table. */
export const PAGE_SIZE = 25;

const ended = (s: ExecutionState) => EXECUTION[s].terminal;

function duration(e: ExecutionDetail): string {
  const from = e.pickedUpAt ?? e.sentAt;
  if (!from || !e.finishedAt) return '—';
  const ms = Math.max(0, new Date(e.finishedAt).getTime() - new Date(from).getTime());
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** "37 targets: logger 'main': ERROR -> DEBUG": only shown when some outcome is shared by two or more. */
export function OutcomeGroups({ executions }: { executions: readonly ExecutionDetail[] }) {
  const groups = useMemo(() => groupIdenticalOutcomes(executions, ended), [executions]);
  if (!groups.some((g) => g.members.length > 1)) return null;
  return (
    <ul data-testid="outcome-groups" aria-label="Identical outcomes" className="grid gap-1 text-sm">
      {groups.map((g) => (
        <li
          key={g.members[0]!.id}
          data-testid="outcome-group"
          data-count={g.members.length}
          className="flex min-w-0 items-center gap-2 rounded-md border px-2 py-1"
        >
          <ExecutionBadge state={g.state} />
          <span className="truncate font-mono text-xs">{displayText(describeGroup(g))}</span>
        </li>
      ))}
    </ul>
  );
}

/** Opens the new-request form with this request's code and parameters and only its failed targets. */
export function RetryFailed({
  requestId,
  executions,
}: {
  requestId: string;
  executions: readonly ExecutionDetail[];
}) {
  const n = retryable(executions).length;
  if (n === 0) return null;
  return (
    <Button asChild variant="outline" size="sm">
      <Link href={`/requests/new?retry=${encodeURIComponent(requestId)}`} data-testid="retry-failed">
        <RotateCcwIcon aria-hidden="true" /> Retry the failed ones ({n})
      </Link>
    </Button>
  );
}

/** One row per target, filtered by state and paged; a row opens its full card (`renderOpen`). */
export function ExecutionTable({
  executions,
  hostnames,
  renderOpen,
  initiallyOpen,
}: {
  executions: readonly ExecutionDetail[];
  hostnames: Record<string, string>;
  renderOpen: (e: ExecutionDetail) => ReactNode;
  initiallyOpen: boolean;
}) {
  const [filter, setFilter] = useState<ExecutionState | 'all'>('all');
  const [page, setPage] = useState(0);
  const [open, setOpen] = useState<Record<string, boolean>>({});
  const counts = executionStateCounts(executions.map((e) => e.state));
  const present = ExecutionState.options.filter((s) => counts[s] > 0);
  const shown = filter === 'all' ? executions : executions.filter((e) => e.state === filter);
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  const at = Math.min(page, pages - 1);
  const rows = shown.slice(at * PAGE_SIZE, (at + 1) * PAGE_SIZE);
  const isOpen = (id: string) => open[id] ?? initiallyOpen;
  const pick = (f: ExecutionState | 'all') => {
    setFilter(f);
    setPage(0);
  };
  return (
    <div className="grid gap-2">
      <div role="group" aria-label="Filter by state" className="flex flex-wrap gap-1.5">
        {(['all', ...present] as const).map((f) => (
          <Button
            key={f}
            type="button"
            size="sm"
            variant={filter === f ? 'default' : 'outline'}
            aria-pressed={filter === f}
            data-testid="state-filter"
            data-state={f}
            onClick={() => pick(f)}
          >
            {f === 'all' ? `all ${executions.length}` : `${EXECUTION[f].label} ${counts[f]}`}
          </Button>
        ))}
      </div>
      <div className="overflow-x-auto rounded-md border">
        <table className="w-full table-fixed text-sm" data-testid="execution-table">
          <thead className="bg-muted/50 text-left text-xs text-muted-foreground">
            <tr>
              <th className="w-72 px-2 py-1.5 font-medium">Target</th>
              <th className="w-32 px-2 py-1.5 font-medium">State</th>
              <th className="w-20 px-2 py-1.5 font-medium">Duration</th>
              <th className="px-2 py-1.5 font-medium">First output line</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((e) => (
              <ExecutionRow
                key={e.id}
                e={e}
                hostname={hostnames[e.agentId]}
                open={isOpen(e.id)}
                onToggle={() => setOpen((o) => ({ ...o, [e.id]: !isOpen(e.id) }))}
              >
                {renderOpen(e)}
              </ExecutionRow>
            ))}
          </tbody>
        </table>
      </div>
      {pages > 1 ? (
        <nav aria-label="Pages of targets" className="flex items-center gap-2 text-sm">
          <Button
            type="button"
            size="sm"
            variant="outline"
            disabled={at === 0}
            onClick={() => setPage(at - 1)}
          >
            Previous
          </Button>
          <span data-testid="execution-page">
            page {at + 1} of {pages}
          </span>
          <Button
            type="button"
            size="sm"
            variant="outline"
            disabled={at >= pages - 1}
            onClick={() => setPage(at + 1)}
          >
            Next
          </Button>
        </nav>
      ) : null}
    </div>
  );
}

function ExecutionRow({
  e,
  hostname,
  open,
  onToggle,
  children,
}: {
  e: ExecutionDetail;
  hostname?: string;
  open: boolean;
  onToggle: () => void;
  children: ReactNode;
}) {
  return (
    <>
      <tr
        data-testid="execution-row"
        data-execution-id={e.id}
        data-state={e.state}
        className="cursor-pointer border-t hover:bg-muted/40"
        onClick={onToggle}
      >
        <td className="px-2 py-1.5 text-xs" data-testid="execution-target">
          <button
            type="button"
            aria-expanded={open}
            className="grid w-full min-w-0 text-left underline-offset-2 hover:underline"
          >
            {/* Named as the fleet names it (its script or module), while the inventory still has it. */}
            {e.process ? (
              <span className="truncate font-medium" data-testid="execution-process-name">
                {processName({ ...e.process, pid: e.pid })}
              </span>
            ) : null}
            <span className="truncate font-mono text-muted-foreground">
              pid {e.pid} on {hostname ?? e.agentId.slice(0, 8)}
            </span>
          </button>
        </td>
        <td className="px-2 py-1.5">
          <ExecutionBadge state={e.state} />
        </td>
        <td className="px-2 py-1.5 tabular-nums">{duration(e)}</td>
        <td className="truncate px-2 py-1.5 font-mono text-xs" data-testid="execution-first-line">
          <SafeTextView text={firstLine(e.output)} />
        </td>
      </tr>
      {open ? (
        <tr>
          <td colSpan={4} className="p-2">
            {children}
          </td>
        </tr>
      ) : null}
    </>
  );
}

/** Where the whole stored output of an execution is (the download, authorised like the page). */
function outputHref(requestId: string, executionId: string): string {
  return `/api/requests/${encodeURIComponent(requestId)}/executions/${encodeURIComponent(executionId)}/output`;
}

/**
 * The output box: the cut marked where it happened, copy, expand, and the whole stored output as a file. When the
 * detail carries a preview (`outputPreview`), Expand and Copy read the whole output from the download (as bytes,
 * back to safe text), kept for as long as the output's digest says it is the same output.
 */
export function OutputBox({
  requestId,
  e,
  output,
  running,
}: {
  requestId: string;
  e: ExecutionDetail;
  output: string;
  running: boolean;
}) {
  const [expanded, setExpanded] = useState(false);
  const [copied, setCopied] = useState(false);
  const [whole, setWhole] = useState<{ digest: string; text: string } | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const href = outputHref(requestId, e.id);
  const digest = e.outputDigest;
  const full = e.outputPreview && whole?.digest === digest ? whole.text : null;
  const loadWhole = useCallback(async (): Promise<string> => {
    const res = await fetch(href, { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`the whole output could not be read (HTTP ${res.status})`);
    const text = encodeBytes(new Uint8Array(await res.arrayBuffer()));
    setWhole({ digest, text });
    return text;
  }, [href, digest]);
  // Expanded over a preview: the whole output, read once per digest (a later end reads the final one).
  const needWhole = expanded && e.outputPreview && full === null;
  useEffect(() => {
    if (!needWhole) return;
    let stale = false;
    setLoadError(null);
    loadWhole().catch((err: unknown) => {
      if (!stale) setLoadError(err instanceof Error ? err.message : String(err));
    });
    return () => {
      stale = true;
    };
  }, [needWhole, loadWhole]);
  /** Shown: the whole output when there is no preview or it was read; the preview (collapsed) otherwise. */
  const showWhole = !e.outputPreview || (expanded && full !== null);
  const { kept, cut } = showWhole
    ? splitAtCut(full ?? output, e.outputDroppedBytes)
    : { kept: output, cut: null };
  const previewBytes = showWhole ? 0 : new TextEncoder().encode(output).length;
  const copy = async () => {
    const text = e.outputPreview ? (full ?? (await loadWhole())) : output;
    await navigator.clipboard.writeText(displayText(splitAtCut(text, e.outputDroppedBytes).kept));
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <div className="grid gap-1">
      <div className="flex items-center gap-1 text-xs font-medium text-muted-foreground">
        <span>Output</span>
        {!showWhole ? (
          <span data-testid="output-preview-note">
            · preview, {previewBytes.toLocaleString('en')} of {e.outputBytes.toLocaleString('en')} bytes
          </span>
        ) : null}
        {e.outputDroppedBytes !== null ? (
          <span className="text-warning-foreground" data-testid="output-cut-note">
            · cut at the cap, {e.outputDroppedBytes.toLocaleString('en')} bytes not kept
          </span>
        ) : null}
        <span className="ml-auto flex gap-1">
          <Button
            type="button"
            size="sm"
            variant="ghost"
            onClick={() => void copy().catch((err: unknown) => setLoadError(String(err)))}
            aria-label="Copy output"
          >
            <CopyIcon aria-hidden="true" /> {copied ? 'Copied' : 'Copy'}
          </Button>
          <Button
            type="button"
            size="sm"
            variant="ghost"
            aria-label={expanded ? 'Collapse output' : 'Expand output'}
            aria-pressed={expanded}
            onClick={() => setExpanded((x) => !x)}
          >
            {expanded ? <Minimize2Icon aria-hidden="true" /> : <Maximize2Icon aria-hidden="true" />}
            {expanded ? 'Collapse' : 'Expand'}
          </Button>
          <Button asChild size="sm" variant="ghost">
            <a href={href} download data-testid="output-download">
              <DownloadIcon aria-hidden="true" /> Download
            </a>
          </Button>
        </span>
      </div>
      <pre
        data-testid="execution-output"
        tabIndex={0}
        aria-live="polite"
        aria-atomic="false"
        className={`overflow-auto rounded-md border bg-muted/60 p-3 font-mono text-xs leading-relaxed whitespace-pre-wrap break-words focus-visible:outline-2 focus-visible:outline-ring ${expanded ? 'max-h-[80vh]' : 'max-h-96'}`}
      >
        <SafeTextView text={kept || (running ? 'Waiting for output…' : '(no output)')} />
        {!showWhole ? (
          <span
            data-testid="output-preview"
            className="block py-1 text-center font-sans text-muted-foreground"
          >
            {expanded && !loadError
              ? '… reading the whole output …'
              : '… Expand (or Download) for the whole output …'}
          </span>
        ) : null}
        {loadError ? (
          <span data-testid="output-load-error" className="block py-1 font-sans text-destructive">
            {loadError}
          </span>
        ) : null}
        {cut !== null ? (
          <span data-testid="output-cut" className="block py-1 text-center font-sans text-warning-foreground">
            … {cut.toLocaleString('en')} bytes cut here …
          </span>
        ) : null}
      </pre>
    </div>
  );
}
