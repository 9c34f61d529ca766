'use client';
import Link from 'next/link';
import { useRouter, useSearchParams } from 'next/navigation';
import { useState, type FormEvent } from 'react';
import { DownloadIcon, SearchIcon, ShieldAlertIcon, ShieldCheckIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card } from '../../../components/ui/card';
import { CodeBlock } from '../../../components/ui/code-block';
import {
  Dialog,
  DialogContent,
  DialogDescription,
  DialogHeader,
  DialogTitle,
} from '../../../components/ui/dialog';
import { Input } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { useCall } from '../../../lib/client/api';
import { useUser } from '../../../lib/client/session';
import { formatTime } from '../../../lib/client/utils';
import type { AuditEventRow } from '@pyreach/protocol/api';

const FILTERS = ['actor', 'actorId', 'action', 'subjectType', 'subjectId', 'from', 'to', 'text'] as const;
type Filter = (typeof FILTERS)[number];

/** datetime-local value → ISO with offset (the API wants an offset), and back. */
const toIso = (local: string) => (local ? new Date(local).toISOString() : '');
const toLocal = (iso: string) => {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
};

export function AuditExplorer() {
  const user = useUser();
  const router = useRouter();
  const sp = useSearchParams();
  const applied: Record<Filter, string> = Object.fromEntries(
    FILTERS.map((f) => [f, sp.get(f) ?? '']),
  ) as Record<Filter, string>;
  const [draft, setDraft] = useState<Record<Filter, string>>(applied);
  const [cursors, setCursors] = useState<string[]>([]);
  const [open, setOpen] = useState<string | null>(null);

  const qs = new URLSearchParams();
  for (const f of FILTERS) if (applied[f]) qs.set(f, applied[f]);
  // Exports take exactly the filters on screen, free text included.
  const exportQs = qs;
  const cursor = cursors.at(-1);
  const { data, error, loading, reload } = useCall('queryAudit', {
    query: { ...Object.fromEntries(qs), limit: 50, ...(cursor ? { cursor } : {}) },
  });
  const verify = useCall('verifyAudit', {});

  function apply(e: FormEvent) {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const f of FILTERS) if (draft[f].trim()) next.set(f, draft[f].trim());
    setCursors([]);
    router.replace(`/audit${next.size ? `?${next}` : ''}`);
  }
  function clear() {
    setDraft(Object.fromEntries(FILTERS.map((f) => [f, ''])) as Record<Filter, string>);
    setCursors([]);
    router.replace('/audit');
  }
  const mayExport = user.role === 'approver' || user.role === 'admin';
  /** Applies `patch` on top of the applied filters (an empty value removes that filter). */
  function filterBy(patch: Partial<Record<Filter, string>>) {
    const next = new URLSearchParams(qs);
    for (const [k, v] of Object.entries(patch)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    setDraft({ ...draft, ...patch });
    setCursors([]);
    router.replace(`/audit${next.size ? `?${next}` : ''}`);
  }
  const opened = data?.events.find((ev) => ev.seq === open) ?? null;

  return (
    <>
      <PageHeader
        title="Audit"
        description="Every state change, hash-chained. Filters run on the server."
        actions={
          <>
            <div data-testid="chain-status" aria-live="polite">
              {verify.error ? (
                <Badge variant="destructive">verification failed to run</Badge>
              ) : !verify.data ? (
                <Badge variant="muted">verifying chain…</Badge>
              ) : verify.data.valid ? (
                <Badge variant="success" className="py-1">
                  <ShieldCheckIcon aria-hidden="true" /> Chain verified · {verify.data.count} events
                </Badge>
              ) : (
                <Badge variant="destructive" className="py-1">
                  <ShieldAlertIcon aria-hidden="true" /> Chain broken at #{verify.data.brokenAt}
                </Badge>
              )}
            </div>
            <Button variant="outline" size="sm" onClick={verify.reload}>
              Re-verify
            </Button>
          </>
        }
      />
      {verify.data && !verify.data.valid ? (
        <Alert
          variant="destructive"
          title={`The audit chain is broken at event #${verify.data.brokenAt}`}
          className="mb-4"
        >
          {verify.data.reason}
        </Alert>
      ) : null}

      <Card className="mb-4 p-4">
        <form
          onSubmit={apply}
          className="grid gap-3 sm:grid-cols-2 lg:grid-cols-4"
          aria-label="Filter audit events"
        >
          <Field id="f-text" label="Text">
            <Input
              id="f-text"
              type="search"
              value={draft.text}
              onChange={(e) => setDraft({ ...draft, text: e.target.value })}
              placeholder="words in the event"
            />
          </Field>
          <Field id="f-action" label="Action">
            <Input
              id="f-action"
              className="font-mono"
              value={draft.action}
              onChange={(e) => setDraft({ ...draft, action: e.target.value })}
              placeholder="review.approve"
            />
          </Field>
          <Field id="f-actor" label="Actor">
            <Input
              id="f-actor"
              value={draft.actor}
              onChange={(e) => setDraft({ ...draft, actor: e.target.value })}
              placeholder="name or e-mail"
            />
          </Field>
          <div className="grid grid-cols-2 gap-2">
            <Field id="f-stype" label="Target type">
              <Input
                id="f-stype"
                className="font-mono"
                value={draft.subjectType}
                onChange={(e) => setDraft({ ...draft, subjectType: e.target.value })}
                placeholder="request"
              />
            </Field>
            <Field id="f-sid" label="Target id">
              <Input
                id="f-sid"
                className="font-mono"
                value={draft.subjectId}
                onChange={(e) => setDraft({ ...draft, subjectId: e.target.value })}
              />
            </Field>
          </div>
          <Field id="f-from" label="From">
            <Input
              id="f-from"
              type="datetime-local"
              value={toLocal(draft.from)}
              onChange={(e) => setDraft({ ...draft, from: toIso(e.target.value) })}
            />
          </Field>
          <Field id="f-to" label="To">
            <Input
              id="f-to"
              type="datetime-local"
              value={toLocal(draft.to)}
              onChange={(e) => setDraft({ ...draft, to: toIso(e.target.value) })}
            />
          </Field>
          <div className="flex items-end gap-2 lg:col-span-2">
            <Button type="submit">
              <SearchIcon aria-hidden="true" /> Apply
            </Button>
            <Button type="button" variant="ghost" onClick={clear}>
              Clear
            </Button>
            {mayExport ? (
              <span className="ml-auto flex gap-2">
                <Button asChild variant="outline">
                  <a
                    href={`/api/audit/export?format=jsonl${exportQs.size ? `&${exportQs}` : ''}`}
                    download
                    data-testid="export-jsonl"
                  >
                    <DownloadIcon aria-hidden="true" /> JSON Lines
                  </a>
                </Button>
                <Button asChild variant="outline">
                  <a
                    href={`/api/audit/export?format=csv${exportQs.size ? `&${exportQs}` : ''}`}
                    download
                    data-testid="export-csv"
                  >
                    <DownloadIcon aria-hidden="true" /> CSV
                  </a>
                </Button>
              </span>
            ) : null}
          </div>
        </form>
        {applied.actorId ? (
          <p className="mt-2 flex items-center gap-2 text-xs text-muted-foreground">
            Only events by actor <code className="font-mono">{applied.actorId}</code>
            <button type="button" className="underline" onClick={() => filterBy({ actorId: '' })}>
              remove
            </button>
          </p>
        ) : null}
      </Card>

      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows rows={8} />
      ) : !data || data.events.length === 0 ? (
        <EmptyState title="No events match">Widen the time range or clear a filter.</EmptyState>
      ) : (
        <Card>
          <Table aria-label="Audit events">
            <THead>
              <TR>
                <TH>#</TH>
                <TH>Time</TH>
                <TH>Actor</TH>
                <TH>Action</TH>
                <TH>Target</TH>
                <TH>Hash</TH>
              </TR>
            </THead>
            <TBody>
              {data.events.map((ev) => (
                <TR
                  key={ev.seq}
                  data-testid="audit-row"
                  data-action={ev.action}
                  className="cursor-pointer"
                  onClick={() => setOpen(ev.seq)}
                >
                  <TD className="font-mono tabular-nums text-muted-foreground">{ev.seq}</TD>
                  <TD className="whitespace-nowrap">
                    <time dateTime={ev.at}>{formatTime(ev.at)}</time>
                  </TD>
                  <TD onClick={(e) => e.stopPropagation()}>
                    <ActorCell ev={ev} onFilter={filterBy} />
                  </TD>
                  <TD>
                    <button
                      type="button"
                      className="font-mono text-xs underline-offset-2 hover:underline focus-visible:outline-2 focus-visible:outline-ring"
                      aria-haspopup="dialog"
                      data-testid="open-event"
                      onClick={(e) => {
                        e.stopPropagation();
                        setOpen(ev.seq);
                      }}
                    >
                      {ev.action}
                    </button>
                  </TD>
                  <TD className="max-w-80" onClick={(e) => e.stopPropagation()}>
                    <SubjectCell ev={ev} onFilter={filterBy} />
                  </TD>
                  <TD className="font-mono text-xs text-muted-foreground" title={ev.hash}>
                    {ev.hash.slice(0, 10)}…
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      <EventDialog ev={opened} onClose={() => setOpen(null)} onFilter={filterBy} />
      <div className="mt-3 flex items-center gap-2">
        <Button
          variant="outline"
          size="sm"
          disabled={cursors.length === 0}
          onClick={() => setCursors(cursors.slice(0, -1))}
        >
          Newer
        </Button>
        <Button
          variant="outline"
          size="sm"
          disabled={!data?.nextCursor}
          onClick={() => data?.nextCursor && setCursors([...cursors, data.nextCursor])}
        >
          Older
        </Button>
        <span className="text-xs text-muted-foreground">page {cursors.length + 1}</span>
      </div>
    </>
  );
}

type OnFilter = (patch: Partial<Record<Filter, string>>) => void;

/** Where a subject lives in the dashboard, when it has a page. */
function subjectHref(type: string | null, id: string | null): string | null {
  if (!type || !id) return null;
  if (type === 'request') return `/requests/${encodeURIComponent(id)}`;
  if (type === 'agent') return '/admin?tab=agents';
  if (type === 'policy') return '/admin?tab=policies';
  if (type === 'user') return '/admin?tab=users';
  return null;
}

function ActorCell({ ev, onFilter }: { ev: AuditEventRow; onFilter: OnFilter }) {
  return (
    <span className="flex flex-wrap items-center gap-1">
      {ev.actorId ? (
        <button
          type="button"
          className="font-medium underline-offset-2 hover:underline"
          title={`Only events by ${ev.actorName ?? ev.actorId} (${ev.actorId})`}
          data-testid="actor-link"
          onClick={() => onFilter({ actorId: ev.actorId ?? '', actor: '' })}
        >
          {ev.actorName ?? ev.actorId}
        </button>
      ) : (
        <span className="font-medium">{ev.actorName ?? '—'}</span>
      )}
      <Badge variant="muted">{ev.actorType}</Badge>
    </span>
  );
}

function SubjectCell({ ev, onFilter }: { ev: AuditEventRow; onFilter: OnFilter }) {
  if (!ev.subjectType) return <span className="text-muted-foreground">—</span>;
  const href = subjectHref(ev.subjectType, ev.subjectId);
  const label = ev.subjectName ?? ev.subjectId ?? '';
  return (
    <span className="flex min-w-0 flex-wrap items-center gap-1 text-sm">
      <Badge variant="outline" className="font-mono font-normal">
        {ev.subjectType}
      </Badge>
      {href ? (
        <Link
          href={href}
          className="min-w-0 truncate underline-offset-2 hover:underline"
          title={ev.subjectId ?? undefined}
          data-testid="subject-link"
        >
          {label}
        </Link>
      ) : (
        <span className="min-w-0 truncate" title={ev.subjectId ?? undefined}>
          {label}
        </span>
      )}
      <button
        type="button"
        className="text-xs text-muted-foreground underline-offset-2 hover:underline"
        title="Filter by this target"
        onClick={() => onFilter({ subjectType: ev.subjectType ?? '', subjectId: ev.subjectId ?? '' })}
      >
        filter
      </button>
    </span>
  );
}

/** One event, whole: who, what, on what, when, its data and its place in the hash chain. */
function EventDialog({
  ev,
  onClose,
  onFilter,
}: {
  ev: AuditEventRow | null;
  onClose: () => void;
  onFilter: OnFilter;
}) {
  return (
    <Dialog open={ev !== null} onOpenChange={(o) => !o && onClose()}>
      <DialogContent className="max-h-[90dvh] max-w-3xl overflow-y-auto" data-testid="event-dialog">
        {ev ? (
          <>
            <DialogHeader>
              <DialogTitle className="font-mono">
                #{ev.seq} {ev.action}
              </DialogTitle>
              <DialogDescription>
                <time dateTime={ev.at}>{formatTime(ev.at)}</time>
              </DialogDescription>
            </DialogHeader>
            <dl className="grid grid-cols-[auto_minmax(0,1fr)] gap-x-4 gap-y-1.5 text-sm">
              <dt className="text-muted-foreground">Actor</dt>
              <dd>
                <ActorCell ev={ev} onFilter={onFilter} />
                {ev.actorId ? (
                  <span className="block font-mono text-xs text-muted-foreground">{ev.actorId}</span>
                ) : null}
              </dd>
              <dt className="text-muted-foreground">Target</dt>
              <dd>
                <SubjectCell ev={ev} onFilter={onFilter} />
                {ev.subjectId ? (
                  <span className="block font-mono text-xs text-muted-foreground">{ev.subjectId}</span>
                ) : null}
              </dd>
              <dt className="text-muted-foreground">Hash</dt>
              <dd className="font-mono text-xs break-all">{ev.hash}</dd>
              <dt className="text-muted-foreground">Previous</dt>
              <dd className="font-mono text-xs break-all">{ev.prevHash}</dd>
            </dl>
            <CodeBlock label="Data" testId="event-data">
              {JSON.stringify(ev.data, null, 2)}
            </CodeBlock>
          </>
        ) : null}
      </DialogContent>
    </Dialog>
  );
}
