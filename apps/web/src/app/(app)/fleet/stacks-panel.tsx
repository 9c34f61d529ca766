'use client';
/**
 * A process's live thread stacks (and asyncio tasks), read by its agent from the target's memory: nothing runs
 * in the target, so no approval is needed (the inspection is audited). Each thread offers "Request on this
 * thread", which opens a new request aimed at that thread (the "inspect first, then request" path).
 */
import type { InspectionView } from '@pyreach/protocol/api';
import type { StacksReport, TasksReport } from '@pyreach/protocol/inspect';
import { INSPECTION } from '@pyreach/protocol/states';
import { displayText } from '@pyreach/protocol/text';
import { RefreshCwIcon } from 'lucide-react';
import Link from 'next/link';
import { useCallback, useState } from 'react';
import { InspectionBadge } from '../../../components/status';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { api, errorMessage } from '../../../lib/client/api';
import { canDo, useUser } from '../../../lib/client/session';
import { useUiEvent } from '../../../lib/client/socket';
import { formatTime } from '../../../lib/client/utils';
import { processKey } from '../requests/new/request-draft';

type What = InspectionView['what'];

export interface InspectTarget {
  agentId: string;
  pid: number;
  startTime: string;
}

/** The new-request page aimed at one thread of this process. */
export const requestOnThread = (t: InspectTarget, tid: number) =>
  `/requests/new?targets=${encodeURIComponent(processKey(t))}&tid=${tid}`;

export function StacksPanel({ target }: { target: InspectTarget }) {
  const user = useUser();
  const [what, setWhat] = useState<What>('stacks');
  const [inspection, setInspection] = useState<InspectionView | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const read = useCallback(
    async (kind: What) => {
      setWhat(kind);
      setBusy(true);
      setError(null);
      try {
        const r = await api('inspectProcess', { body: { ...target, what: kind } });
        setInspection(r.inspection);
      } catch (err) {
        setError(errorMessage(err));
      } finally {
        setBusy(false);
      }
    },
    [target],
  );

  // The agent's answer arrives as a push; the report itself is read with the route (the push carries only ids).
  useUiEvent('inspection:changed', (msg) => {
    if (!inspection || msg.inspectionId !== inspection.id) return;
    void api('getInspection', { params: { id: msg.inspectionId } }).then(
      (r) => setInspection(r.inspection),
      (err: unknown) => setError(errorMessage(err)),
    );
  });

  if (!canDo(user.role, 'process:inspect')) return null;
  const pending = inspection && !INSPECTION[inspection.state].terminal;
  return (
    <section className="grid gap-2" data-testid="stacks-panel">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h3 className="text-sm font-semibold">Live stacks</h3>
        <div className="flex gap-2">
          <Button
            size="sm"
            variant={what === 'stacks' || !inspection ? 'default' : 'outline'}
            onClick={() => void read('stacks')}
            disabled={busy || !!pending}
            data-testid="inspect-stacks"
          >
            {inspection?.what === 'stacks' ? <RefreshCwIcon aria-hidden="true" /> : null}
            {inspection?.what === 'stacks' ? 'Refresh stacks' : 'Read stacks'}
          </Button>
          <Button
            size="sm"
            variant={inspection?.what === 'tasks' ? 'default' : 'outline'}
            onClick={() => void read('tasks')}
            disabled={busy || !!pending}
            data-testid="inspect-tasks"
          >
            asyncio tasks
          </Button>
        </div>
      </div>
      <p className="text-xs text-muted-foreground">
        Read by the agent from the process&apos;s memory: no code runs in it and no approval is needed. Every
        read is audited.
      </p>
      {error ? (
        <p className="text-sm text-destructive" role="alert" data-testid="inspect-error">
          {error}
        </p>
      ) : null}
      {inspection ? <InspectionResult inspection={inspection} target={target} /> : null}
    </section>
  );
}

function InspectionResult({ inspection, target }: { inspection: InspectionView; target: InspectTarget }) {
  return (
    <div className="grid gap-2" aria-live="polite">
      <div className="flex flex-wrap items-center gap-2 text-xs text-muted-foreground">
        <InspectionBadge state={inspection.state} />
        <span>asked {formatTime(inspection.createdAt)}</span>
      </div>
      {inspection.errorCode || inspection.message ? (
        <p className="text-sm" data-testid="inspection-message">
          {inspection.errorCode ? <span className="font-mono">{inspection.errorCode}</span> : null}{' '}
          {inspection.message ? displayText(inspection.message) : null}
        </p>
      ) : null}
      {inspection.stacks ? <Stacks report={inspection.stacks} target={target} /> : null}
      {inspection.tasks ? <Tasks report={inspection.tasks} /> : null}
    </div>
  );
}

function Stacks({ report, target }: { report: StacksReport; target: InspectTarget }) {
  return (
    <ul className="grid gap-2" data-testid="stacks">
      {report.errors.map((e, i) => (
        <li key={`e${i}`} className="text-xs text-warning">
          {e.code}: {displayText(e.message)}
        </li>
      ))}
      {report.threads.map((t) => (
        <li key={`${t.interpreterId}:${t.tid}`} className="rounded-md border p-2" data-testid="stack-thread">
          <div className="flex flex-wrap items-center gap-2 text-sm">
            <span className="font-medium">{t.name ? displayText(t.name) : 'thread'}</span>
            <span className="font-mono text-xs text-muted-foreground">tid {t.tid}</span>
            {t.main ? <Badge variant="outline">main</Badge> : null}
            {t.state ? (
              <span className="text-xs text-muted-foreground" data-testid="thread-state">
                {t.state.status}
                {t.state.syscall?.name ? ` in ${t.state.syscall.name}` : ''}
              </span>
            ) : null}
            <Link
              href={requestOnThread(target, t.tid)}
              className="ml-auto text-xs font-medium underline-offset-2 hover:underline"
              data-testid="request-on-thread"
            >
              Request on this thread
            </Link>
          </div>
          {t.error ? (
            <p className="text-xs text-warning">
              {t.error.code}: {displayText(t.error.message)}
            </p>
          ) : null}
          <ol
            className="mt-1 grid gap-0.5 font-mono text-xs"
            aria-label={`frames of tid ${t.tid}, innermost first`}
          >
            {t.frames.map((f, i) => (
              <li key={i} className="break-all" data-testid="stack-frame">
                <span className="text-foreground">{displayText(f.function)}</span>{' '}
                <span className="text-muted-foreground">
                  {displayText(f.file)}:{f.line ?? '?'}
                </span>
              </li>
            ))}
            {t.truncated ? (
              <li className="text-muted-foreground">… (cut at the reader&apos;s bound)</li>
            ) : null}
          </ol>
        </li>
      ))}
    </ul>
  );
}

function Tasks({ report }: { report: TasksReport }) {
  return (
    <div className="grid gap-2" data-testid="tasks">
      {report.errors.map((e, i) => (
        <p key={`e${i}`} className="text-xs text-warning">
          {e.code}: {displayText(e.message)}
        </p>
      ))}
      {report.tasks.length === 0 ? (
        <p className="text-sm text-muted-foreground">No asyncio tasks.</p>
      ) : (
        <ul className="grid gap-1 font-mono text-xs">
          {report.tasks.map((t) => (
            <li key={t.id} className="rounded-md border p-2 break-all" data-testid="task">
              <span className="font-medium">{t.name ? displayText(t.name) : t.id}</span>
              {t.running ? <span className="text-muted-foreground"> (running)</span> : null}
              {t.awaitedBy.length ? (
                <span className="text-muted-foreground">
                  {' '}
                  ← awaited by {t.awaitedBy.map((a) => (a.name ? displayText(a.name) : a.id)).join(', ')}
                </span>
              ) : null}
              <ol className="mt-1 grid gap-0.5">
                {t.stack.map((f, i) => (
                  <li key={i}>
                    {displayText(f.function)}{' '}
                    <span className="text-muted-foreground">
                      {displayText(f.file)}:{f.line ?? '?'}
                    </span>
                  </li>
                ))}
              </ol>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
