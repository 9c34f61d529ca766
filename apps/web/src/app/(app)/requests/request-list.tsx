'use client';
import Link from 'next/link';
import { useState } from 'react';
import { PlusIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { describeTargets } from '../../../components/requests/code-and-params';
import { RequestBadge, RequestMarks } from '../../../components/status';
import { Button } from '../../../components/ui/button';
import { Card } from '../../../components/ui/card';
import { NativeSelect } from '../../../components/ui/input';
import { Label } from '../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { useCall, useHostnames, useNames } from '../../../lib/client/api';
import { canDo, useUser } from '../../../lib/client/session';
import { useUiEvent } from '../../../lib/client/socket';
import { REQUEST, RequestState } from '@pyreach/protocol/states';
import { relativeTime } from '../../../lib/client/utils';

const STATES = RequestState.options;

export function RequestList() {
  const user = useUser();
  const [state, setState] = useState('');
  const [mine, setMine] = useState(false);
  const [cursor, setCursor] = useState<string | null>(null);
  const { data, error, loading, reload } = useCall('listRequests', {
    query: {
      limit: 50,
      ...(state ? { state } : {}),
      ...(mine ? { requesterId: user.id } : {}),
      ...(cursor ? { cursor } : {}),
    },
  });
  // An agent's progress (same state) changes nothing listed here.
  useUiEvent('request:changed', (m) => {
    if (!m.progress) reload();
  });
  const names = useNames((data?.requests ?? []).map((r) => r.requesterId));
  const hostnames = useHostnames();

  return (
    <>
      <PageHeader
        title="Requests"
        description="Everything asked to run, newest first."
        actions={
          canDo(user.role, 'request:create') ? (
            <Button asChild>
              <Link href="/requests/new">
                <PlusIcon aria-hidden="true" /> New request
              </Link>
            </Button>
          ) : null
        }
      />
      <div className="mb-4 flex flex-wrap items-end gap-3">
        <div className="grid gap-1.5">
          <Label htmlFor="req-state">State</Label>
          <NativeSelect
            id="req-state"
            value={state}
            onChange={(e) => {
              setCursor(null);
              setState(e.target.value);
            }}
            className="w-48"
          >
            <option value="">Any state</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {REQUEST[s].label}
              </option>
            ))}
          </NativeSelect>
        </div>
        <label className="flex h-9 items-center gap-2 text-sm">
          <input
            type="checkbox"
            className="size-4 accent-[var(--color-primary)]"
            checked={mine}
            onChange={(e) => {
              setCursor(null);
              setMine(e.target.checked);
            }}
          />
          Only mine
        </label>
      </div>
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows rows={6} />
      ) : !data || data.requests.length === 0 ? (
        <EmptyState title="No requests">
          {state || mine ? 'Nothing matches these filters.' : 'No one has asked to run anything yet.'}
        </EmptyState>
      ) : (
        <Card>
          <Table aria-label="Requests">
            <THead>
              <TR>
                <TH>What</TH>
                <TH>State</TH>
                <TH>Targets</TH>
                <TH>Requester</TH>
                <TH>Reason</TH>
                <TH>Created</TH>
              </TR>
            </THead>
            <TBody>
              {data.requests.map((r) => (
                <TR key={r.id} data-testid="request-row">
                  <TD>
                    <Link
                      href={`/requests/${r.id}`}
                      className="font-medium underline-offset-2 hover:underline focus-visible:outline-2 focus-visible:outline-ring"
                    >
                      {r.kind === 'library' ? r.scriptId : 'custom code'}
                    </Link>
                  </TD>
                  <TD>
                    <RequestBadge state={r.state} />
                    <RequestMarks request={r} />
                  </TD>
                  <TD className="max-w-56 truncate font-mono text-xs">
                    {describeTargets(r.targets, hostnames).join('; ')}
                  </TD>
                  <TD>{names[r.requesterId]?.name ?? '…'}</TD>
                  <TD className="max-w-72 truncate" title={r.reason}>
                    {r.reason}
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{relativeTime(r.createdAt)}</TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      <div className="mt-3 flex gap-2">
        {cursor ? (
          <Button variant="outline" size="sm" onClick={() => setCursor(null)}>
            Newest
          </Button>
        ) : null}
        {data?.nextCursor ? (
          <Button variant="outline" size="sm" onClick={() => setCursor(data.nextCursor)}>
            Older
          </Button>
        ) : null}
      </div>
    </>
  );
}
