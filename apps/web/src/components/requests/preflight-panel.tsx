'use client';
/**
 * Pre-flight: each target of a request (or of the draft on the new-request form) with its name, command line,
 * user, container and verdict (packages/protocol/src/preflight.ts), doomed ones first, so nobody approves a
 * request that cannot run. The request page and the approvals queue load it re-evaluated now.
 */
import { ShieldAlertIcon } from 'lucide-react';
import {
  verdictLabel,
  type PreflightReport,
  type PreflightTargetRow,
  type PreflightVerdict,
} from '@pyreach/protocol/preflight';
import { errorMessage, useCall } from '../../lib/client/api';
import { middleEllipsis, plural, processName } from '../../lib/client/process';
import { Alert } from '../ui/alert';
import { Badge } from '../ui/badge';
import { Card, CardContent, CardHeader, CardTitle } from '../ui/card';
import { Table, TBody, TD, TH, THead, TR } from '../ui/table';

/** Rows shown before "and N more" (the counts cover every target). */
const SHOWN = 50;
const ORDER: Record<PreflightVerdict, number> = { doomed: 0, warn: 1, ok: 2 };
const VARIANT = { doomed: 'destructive', warn: 'warning', ok: 'success' } as const;

function nameOf(t: PreflightTargetRow): string {
  if (!t.cmdline || t.exe === null) return `pid ${t.pid}`;
  return processName({
    cmdline: t.cmdline,
    exe: t.exe,
    container: t.pod ?? t.container,
    inContainer: t.inContainer ?? false,
    pid: t.pid,
  });
}

/** The verdicts of one report as a compact table (the counts first). */
export function PreflightTable({ report }: { report: PreflightReport }) {
  const rows = [...report.targets].sort((a, b) => ORDER[a.verdict] - ORDER[b.verdict]);
  const { ok, warn, doomed } = report.counts;
  return (
    <div className="grid gap-2" data-testid="preflight">
      <div className="flex flex-wrap items-center gap-1.5 text-sm" data-testid="preflight-counts">
        {doomed ? <Badge variant="destructive">{doomed} doomed</Badge> : null}
        {warn ? <Badge variant="warning">{warn} may fail</Badge> : null}
        {ok ? <Badge variant="success">{ok} ok</Badge> : null}
        {report.targets.length === 0 ? (
          <span className="text-muted-foreground">No process matches now.</span>
        ) : null}
        {report.truncated ? (
          <span className="text-xs text-muted-foreground">
            (+{plural(report.truncated, 'match', 'matches')} not evaluated)
          </span>
        ) : null}
      </div>
      {report.allDoomed ? (
        <Alert variant="destructive" title="Every target is doomed" data-testid="preflight-all-doomed">
          A request like this is refused: each target would be refused before it runs.
        </Alert>
      ) : null}
      {rows.length ? (
        <Table className="table-fixed">
          <THead>
            <TR>
              <TH className="w-[28%]">Target</TH>
              <TH>Command line</TH>
              <TH className="w-[12%]">User</TH>
              <TH className="w-[16%]">Container</TH>
              <TH className="w-[11%]">Verdict</TH>
            </TR>
          </THead>
          <TBody>
            {rows.slice(0, SHOWN).map((t) => {
              const cmd = t.cmdline?.join(' ') ?? null;
              return (
                <TR
                  key={`${t.agentId}:${t.pid}:${t.startTime}`}
                  data-testid="preflight-target"
                  data-verdict={t.verdict}
                  className="align-top"
                >
                  <TD className="min-w-0">
                    <div className="truncate font-medium" title={nameOf(t)}>
                      {nameOf(t)}
                    </div>
                    <div className="truncate text-xs text-muted-foreground">
                      {t.hostname ?? t.agentId} · pid {t.pid}
                      {t.tid !== null ? ` · tid ${t.tid}` : ''}
                    </div>
                  </TD>
                  <TD className="min-w-0">
                    <div className="truncate font-mono text-xs" title={cmd ?? undefined}>
                      {cmd === null ? '—' : middleEllipsis(cmd, 72)}
                    </div>
                    {t.reasons.length ? (
                      <ul className="mt-1 grid gap-0.5 text-xs" data-testid="preflight-reasons">
                        {t.reasons.map((r) => (
                          <li
                            key={r.code}
                            data-code={r.code}
                            className={r.level === 'doomed' ? 'text-destructive' : 'text-warning'}
                          >
                            {r.message}
                          </li>
                        ))}
                      </ul>
                    ) : null}
                  </TD>
                  <TD className="truncate text-xs">{t.user ?? (t.uid !== null ? `uid ${t.uid}` : '—')}</TD>
                  <TD className="truncate text-xs" title={t.pod ?? t.container ?? undefined}>
                    {t.pod ?? (t.inContainer ? (t.container ?? 'container') : 'host')}
                  </TD>
                  <TD>
                    <Badge variant={VARIANT[t.verdict]} data-testid="preflight-verdict">
                      {verdictLabel(t.verdict)}
                    </Badge>
                  </TD>
                </TR>
              );
            })}
          </TBody>
        </Table>
      ) : null}
      {rows.length > SHOWN ? (
        <p className="text-xs text-muted-foreground">and {plural(rows.length - SHOWN, 'more target')}</p>
      ) : null}
    </div>
  );
}

/** A card around the verdicts: `report` given (the form's preview) or loaded for a filed request. */
export function PreflightCard({
  report,
  error,
  loading,
}: {
  report: PreflightReport | undefined;
  error: unknown;
  loading: boolean;
}) {
  return (
    <Card data-testid="preflight-card">
      <CardHeader>
        <CardTitle className="flex items-center gap-2">
          <ShieldAlertIcon aria-hidden="true" className="size-4" /> Pre-flight
          <span className="text-xs font-normal text-muted-foreground">
            what is known now about each target
          </span>
        </CardTitle>
      </CardHeader>
      <CardContent aria-live="polite">
        {error ? (
          <Alert variant="destructive" title="Could not evaluate the targets">
            {errorMessage(error)}
          </Alert>
        ) : report ? (
          <PreflightTable report={report} />
        ) : loading ? (
          <p className="text-sm text-muted-foreground">Evaluating…</p>
        ) : (
          <p className="text-sm text-muted-foreground">Pick targets to see their pre-flight.</p>
        )}
      </CardContent>
    </Card>
  );
}

/** A filed request's pre-flight, re-evaluated now (GET /api/requests/{id}/preflight). */
export function RequestPreflight({ requestId }: { requestId: string }) {
  const res = useCall('getRequestPreflight', { params: { id: requestId } });
  return <PreflightCard report={res.data?.preflight} error={res.error} loading={res.loading} />;
}
