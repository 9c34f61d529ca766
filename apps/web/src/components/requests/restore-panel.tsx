'use client';
import { useEffect, useRef, useState } from 'react';
import { RotateCcwIcon, TimerIcon } from 'lucide-react';
import type { RequestRestore, RequestRow, RestoreRunRow } from '@pyreach/protocol/api';
import { RESTORE_OUTCOME, RESTORE_RUN } from '@pyreach/protocol/states';
import { api, errorMessage, useCall, useHostnames } from '../../lib/client/api';
import { canDo, useUser } from '../../lib/client/session';
import { useUiEvent } from '../../lib/client/socket';
import { formatTime } from '../../lib/client/utils';
import { Alert } from '../ui/alert';
import { Badge } from '../ui/badge';
import { Button } from '../ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../ui/card';

const TONE_VARIANT = {
  success: 'success',
  failure: 'destructive',
  warning: 'warning',
  waiting: 'muted',
  active: 'default',
  neutral: 'secondary',
} as const;

/** "4 min 05 s" until `at` (0 when past). */
export function countdown(at: string, now: number): string {
  const s = Math.max(0, Math.round((Date.parse(at) - now) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h} h ${String(m).padStart(2, '0')} min` : m ? `${m} min ${sec} s` : `${s % 60} s`;
}

function RunLine({ run }: { run: RestoreRunRow }) {
  const o = run.outcome ? RESTORE_OUTCOME[run.outcome] : null;
  return (
    <li
      className="grid gap-1"
      data-testid="restore-run"
      data-mode={run.mode}
      data-outcome={run.outcome ?? ''}
    >
      <div className="flex flex-wrap items-center gap-2">
        <span className="font-medium">{run.mode === 'now' ? 'Restore now' : 'Check at expiry'}</span>
        <Badge variant={TONE_VARIANT[RESTORE_RUN[run.state].tone]}>{RESTORE_RUN[run.state].label}</Badge>
        {o ? <Badge variant={TONE_VARIANT[o.tone]}>{o.label}</Badge> : null}
        {run.current ? <span className="text-muted-foreground">now at {run.current}</span> : null}
      </div>
      {run.levels.length ? (
        <ul className="grid gap-0.5 pl-3 font-mono text-xs">
          {run.levels.map((l, i) => (
            <li key={i}>
              {l.kind} {l.name}:{' '}
              {l.restored
                ? `${l.from} → ${l.restored}`
                : `left at ${l.leftAt} (${l.reason ?? 'changed meanwhile'})`}
            </li>
          ))}
        </ul>
      ) : null}
      {run.message ? <p className="text-xs text-muted-foreground">{run.message}</p> : null}
    </li>
  );
}

/**
 * The restore a change that undoes itself carries: when each target restores itself (a countdown), what each
 * follow-up found, and "Restore now" — part of what was approved, so no new vote; offered to the requester and to
 * approvers and admins (the server checks again). Renders nothing for a request whose change does not undo itself.
 */
export function RestorePanel({ request }: { request: Pick<RequestRow, 'id' | 'requesterId' | 'state'> }) {
  const user = useUser();
  const res = useCall('getRequestRestore', { params: { id: request.id } });
  const hostnames = useHostnames();
  const [now, setNow] = useState(() => Date.now());
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [fresh, setFresh] = useState<RequestRestore | null>(null);
  // Counts the pushes about this request: an answer to "Restore now" that a push overtook is older than what the
  // push's reload shows (the target can restore within milliseconds) and must not be pinned over it.
  const pushes = useRef(0);
  const { reload } = res;

  useUiEvent('request:changed', (m) => {
    if (m.requestId === request.id && !m.progress) {
      pushes.current++;
      setFresh(null);
      reload();
    }
  });
  // The request's state moving (its executions succeeded) is when checks get scheduled.
  useEffect(() => reload(), [request.state, reload]);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);

  const restore = fresh ?? res.data?.restore;
  if (!restore?.autoRestore) return null;
  const mayRestore =
    canDo(user.role, 'request:restore') && (user.role !== 'operator' || request.requesterId === user.id);
  const pending = restore.targets.filter((t) => Date.parse(t.restoreAt) > now);
  const next = pending.map((t) => t.restoreAt).sort()[0];

  async function restoreNow() {
    setBusy(true);
    setError(null);
    try {
      const seen = pushes.current;
      const r = await api('restoreRequestNow', { params: { id: request.id }, body: {} });
      if (pushes.current === seen) setFresh(r.restore);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Card data-testid="restore-panel">
      <CardHeader>
        <CardTitle className="flex items-center gap-2">
          <TimerIcon aria-hidden="true" className="size-4" /> Undoes itself
        </CardTitle>
        <CardDescription>
          Each target restores the previous levels itself after {restore.durationSeconds} s (NOTSET included),
          even with its agent or the control plane down; a level someone changed meanwhile is left alone. The
          approval covers the restore: the check at expiry and “Restore now” need no new vote.
        </CardDescription>
      </CardHeader>
      <CardContent className="grid gap-3 text-sm">
        {restore.targets.length === 0 ? (
          <p className="text-muted-foreground">The countdown starts when a target’s change has been made.</p>
        ) : next ? (
          <p data-testid="restore-countdown" aria-live="off">
            Restores itself in <strong>{countdown(next, now)}</strong>{' '}
            <span className="text-muted-foreground">({formatTime(next)})</span>
            {pending.length < restore.targets.length
              ? ` · ${restore.targets.length - pending.length} of ${restore.targets.length} targets already due`
              : ''}
          </p>
        ) : (
          <p data-testid="restore-countdown">Every target’s change is past its duration.</p>
        )}
        {restore.restoreNowOpen && mayRestore ? (
          <Button type="button" variant="outline" onClick={() => void restoreNow()} disabled={busy}>
            <RotateCcwIcon aria-hidden="true" /> Restore now
          </Button>
        ) : null}
        {error ? <Alert variant="destructive" title={errorMessage(error)} /> : null}
        {restore.targets.map((t) => {
          const runs = restore.runs.filter((r) => r.executionId === t.executionId);
          return (
            <section key={t.executionId} className="grid gap-1 border-t pt-2" data-testid="restore-target">
              <h3 className="text-xs font-semibold">
                {hostnames[t.agentId] ?? t.agentId.slice(0, 8)} · pid {t.pid}{' '}
                <span className="font-normal text-muted-foreground">restores {formatTime(t.restoreAt)}</span>
              </h3>
              <ul className="grid gap-2">
                {runs.map((r) => (
                  <RunLine key={r.id} run={r} />
                ))}
              </ul>
            </section>
          );
        })}
      </CardContent>
    </Card>
  );
}
