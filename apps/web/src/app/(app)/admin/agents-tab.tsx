'use client';
import { useEffect, useState } from 'react';
import { useForm } from 'react-hook-form';
import { KeyRoundIcon, ServerIcon } from 'lucide-react';
import type { AgentRow } from '@pyreach/protocol/api';
import { LabelList, OnlineBadge } from '../../../components/status';
import { Alert } from '../../../components/ui/alert';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../components/ui/card';
import { CodeBlock } from '../../../components/ui/code-block';
import { CopyButton } from '../../../components/ui/copy-button';
import {
  Dialog,
  DialogContent,
  DialogDescription,
  DialogFooter,
  DialogHeader,
  DialogTitle,
} from '../../../components/ui/dialog';
import { Input } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { api, errorMessage, useCall } from '../../../lib/client/api';
import { parseLabels } from '../../../lib/client/labels';
import { useUiEvent } from '../../../lib/client/socket';
import { formatTime, relativeTime } from '../../../lib/client/utils';

export function AgentsTab() {
  const { data, error, loading, reload } = useCall('listAgents', { query: { includeRevoked: 'true' } });
  useUiEvent('fleet:changed', () => reload());
  const [revoking, setRevoking] = useState<AgentRow | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [tokensVersion, setTokensVersion] = useState(0);
  const agents = data?.agents ?? [];
  return (
    <div className="grid gap-4">
      <JoinTokenCard onCreated={() => setTokensVersion((n) => n + 1)} />
      <JoinTokenList version={tokensVersion} onChanged={reload} />
      {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : agents.length === 0 ? (
        <EmptyState title="No agents enrolled" icon={<ServerIcon />}>
          Create a join token above and run the command on a host.
        </EmptyState>
      ) : (
        <Card>
          <Table aria-label="Agents">
            <THead>
              <TR>
                <TH>Agent</TH>
                <TH>Status</TH>
                <TH>Version</TH>
                <TH>Labels</TH>
                <TH>Last seen</TH>
                <TH>Enrolled</TH>
                <TH>
                  <span className="sr-only">Actions</span>
                </TH>
              </TR>
            </THead>
            <TBody>
              {agents.map((a) => (
                <TR key={a.id} data-testid="agent-row">
                  <TD>
                    <div className="font-medium">{a.name}</div>
                    <div className="font-mono text-xs text-muted-foreground">{a.id}</div>
                  </TD>
                  <TD>
                    <OnlineBadge status={a.status} revoked={!!a.revokedAt} />
                    {a.revokedReason ? (
                      <div className="text-xs text-muted-foreground">{a.revokedReason}</div>
                    ) : null}
                  </TD>
                  <TD className="font-mono text-xs">{a.version}</TD>
                  <TD>
                    <LabelList labels={a.labels} />
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{relativeTime(a.lastSeenAt)}</TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{formatTime(a.enrolledAt)}</TD>
                  <TD className="text-right">
                    {!a.revokedAt ? (
                      <Button
                        size="sm"
                        variant="outline"
                        aria-label={`Revoke ${a.name} (${a.id})`}
                        onClick={() => setRevoking(a)}
                      >
                        Revoke
                      </Button>
                    ) : null}
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      <RevokeDialog
        agent={revoking}
        onClose={() => setRevoking(null)}
        onRevoked={() => {
          setRevoking(null);
          reload();
        }}
        onError={setErr}
      />
    </div>
  );
}

interface TokenForm {
  labels: string;
  ttlMinutes: number;
  note: string;
  maxUses: number;
  unlimited: boolean;
  hostPattern: string;
}

/**
 * A join token and the command to run on the host (shown once): one-time by default, or for a fleet with a use
 * limit (or unlimited), a longer life and a host-name pattern.
 */
function JoinTokenCard({ onCreated }: { onCreated: () => void }) {
  const form = useForm<TokenForm>({
    defaultValues: { labels: '', ttlMinutes: 60, note: '', maxUses: 1, unlimited: false, hostPattern: '' },
  });
  const [token, setToken] = useState<{ token: string; expiresAt: string } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const origin = typeof window !== 'undefined' ? window.location.origin : '';
  const create = form.handleSubmit(async (v) => {
    setErr(null);
    const labels = parseLabels(v.labels);
    if (labels.error) {
      form.setError('labels', { message: labels.error });
      return;
    }
    try {
      const r = await api('createJoinToken', {
        body: {
          labels: labels.labels,
          ttlMinutes: v.ttlMinutes,
          maxUses: v.unlimited ? null : v.maxUses,
          ...(v.hostPattern.trim() ? { hostPattern: v.hostPattern.trim() } : {}),
          ...(v.note.trim() ? { note: v.note.trim() } : {}),
        },
      });
      setToken(r.joinToken);
      onCreated();
    } catch (error) {
      setErr(error);
    }
  });
  const command = token ? `pyreach-agent enroll --server ${origin} --token ${token.token}` : '';
  return (
    <Card>
      <CardHeader>
        <CardTitle>Enrol a host</CardTitle>
        <CardDescription>
          A join token: one host by default, or a fleet with a use limit and a host-name pattern. Every host
          generates its own key; every enrolment is listed with its token below.
        </CardDescription>
      </CardHeader>
      <CardContent className="grid gap-3">
        <form onSubmit={create} className="grid gap-3 sm:grid-cols-[1fr_8rem_1fr_auto] lg:grid-cols-3">
          <Field
            id="jt-labels"
            label="Labels"
            hint="key=value, comma-separated"
            error={form.formState.errors.labels?.message}
          >
            <Input
              id="jt-labels"
              className="font-mono"
              placeholder="env=prod,team=orders"
              {...form.register('labels')}
            />
          </Field>
          <Field id="jt-ttl" label="Valid (minutes)">
            <Input
              id="jt-ttl"
              type="number"
              min={1}
              max={525600}
              {...form.register('ttlMinutes', { setValueAs: (v) => Number(v) || 60 })}
            />
          </Field>
          <Field id="jt-max-uses" label="Max uses">
            <Input
              id="jt-max-uses"
              type="number"
              min={1}
              disabled={form.watch('unlimited')}
              {...form.register('maxUses', { setValueAs: (v) => Number(v) || 1 })}
            />
          </Field>
          <label className="flex items-center gap-2 pt-5 text-sm">
            <input type="checkbox" {...form.register('unlimited')} /> Unlimited uses
          </label>
          <Field id="jt-host-pattern" label="Host pattern" hint="optional, e.g. node-*.prod.example">
            <Input id="jt-host-pattern" className="font-mono" {...form.register('hostPattern')} />
          </Field>
          <Field id="jt-note" label="Note">
            <Input id="jt-note" placeholder="orders-prod-3 rollout" {...form.register('note')} />
          </Field>
          <div className="pt-5">
            <Button type="submit">
              <KeyRoundIcon aria-hidden="true" /> Create join token
            </Button>
          </div>
        </form>
        {token ? (
          <Alert variant="success" title="Run this on the host (shown once)">
            <div className="grid gap-2">
              <CodeBlock testId="enroll-command">{command}</CodeBlock>
              <div className="flex items-center gap-2">
                <CopyButton text={command} label="Copy command" />
                <span className="text-xs">expires {formatTime(token.expiresAt)}</span>
              </div>
              <span className="text-xs">
                Then start it with <code className="font-mono">pyreach-agent run</code>.
              </span>
            </div>
          </Alert>
        ) : null}
        {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      </CardContent>
    </Card>
  );
}

/** Join tokens with their uses and the agents each enrolled; revoke one, or every agent it enrolled. */
function JoinTokenList({ version, onChanged }: { version: number; onChanged: () => void }) {
  const { data, error, reload } = useCall('listJoinTokens', {});
  const [err, setErr] = useState<unknown>(null);
  // A token just created (version bumped by the card above) shows at once; the first render loads anyway.
  useEffect(() => {
    if (version > 0) reload();
  }, [version, reload]);
  const tokens = data?.joinTokens ?? [];
  const act = async (f: () => Promise<unknown>) => {
    setErr(null);
    try {
      await f();
      reload();
      onChanged();
    } catch (e) {
      setErr(e);
    }
  };
  if (error) return <ErrorState error={error} onRetry={reload} />;
  if (tokens.length === 0) return null;
  return (
    <Card>
      {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      <Table aria-label="Join tokens">
        <THead>
          <TR>
            <TH>Token</TH>
            <TH>Status</TH>
            <TH>Uses</TH>
            <TH>Host pattern</TH>
            <TH>Expires</TH>
            <TH>Agents</TH>
            <TH>
              <span className="sr-only">Actions</span>
            </TH>
          </TR>
        </THead>
        <TBody>
          {tokens.map((t) => {
            const live = t.agents.filter((a) => !a.revokedAt);
            return (
              <TR key={t.id} data-testid="join-token-row">
                <TD>
                  <div className="font-medium">{t.note ?? 'join token'}</div>
                  <div className="font-mono text-xs text-muted-foreground">{t.id}</div>
                  <LabelList labels={t.labels} />
                </TD>
                <TD>{t.status.replace('_', ' ')}</TD>
                <TD className="tabular-nums">
                  {t.useCount} / {t.maxUses ?? '∞'}
                  {t.refusedCount > 0 ? (
                    <div className="text-xs text-muted-foreground">{t.refusedCount} refused</div>
                  ) : null}
                </TD>
                <TD className="font-mono text-xs">{t.hostPattern ?? '—'}</TD>
                <TD>{formatTime(t.expiresAt)}</TD>
                <TD className="text-xs">
                  {live.length} live
                  {t.agents.length > live.length ? `, ${t.agents.length - live.length} revoked` : ''}
                  <div className="text-muted-foreground">{live.map((a) => a.name).join(', ')}</div>
                </TD>
                <TD className="whitespace-nowrap text-right">
                  {t.revokedAt ? null : (
                    <Button
                      size="sm"
                      variant="outline"
                      onClick={() => void act(() => api('revokeJoinToken', { params: { id: t.id } }))}
                    >
                      Revoke token
                    </Button>
                  )}{' '}
                  {live.length > 0 ? (
                    <Button
                      size="sm"
                      variant="destructive"
                      onClick={() => {
                        if (!window.confirm(`Revoke all ${live.length} agents enrolled with this token?`))
                          return;
                        void act(() =>
                          api('revokeJoinTokenAgents', {
                            params: { id: t.id },
                            body: { reason: 'revoked with their join token from the dashboard' },
                          }),
                        );
                      }}
                    >
                      Revoke its agents
                    </Button>
                  ) : null}
                </TD>
              </TR>
            );
          })}
        </TBody>
      </Table>
    </Card>
  );
}

function RevokeDialog({
  agent,
  onClose,
  onRevoked,
  onError,
}: {
  agent: AgentRow | null;
  onClose: () => void;
  onRevoked: () => void;
  onError: (err: unknown) => void;
}) {
  const form = useForm<{ reason: string }>({ defaultValues: { reason: '' } });
  const revoke = form.handleSubmit(async ({ reason }) => {
    if (!agent) return;
    try {
      await api('revokeAgent', {
        params: { id: agent.id },
        body: { reason: reason.trim() || 'revoked from the dashboard' },
      });
      form.reset();
      onRevoked();
    } catch (error) {
      onError(error);
    }
  });
  return (
    <Dialog open={agent !== null} onOpenChange={(o) => !o && onClose()}>
      <DialogContent>
        <form onSubmit={revoke} className="grid gap-4">
          <DialogHeader>
            <DialogTitle>Revoke {agent?.name}?</DialogTitle>
            <DialogDescription>
              Its connection drops now and it is refused from then on. The host must enrol again with a new
              token.
            </DialogDescription>
          </DialogHeader>
          {/* Two agents may share a name: say exactly which one this is. */}
          {agent ? (
            <dl className="grid grid-cols-[auto_1fr] gap-x-3 gap-y-1 text-sm" data-testid="revoke-identity">
              <dt className="text-muted-foreground">Agent id</dt>
              <dd className="font-mono text-xs break-all">{agent.id}</dd>
              <dt className="text-muted-foreground">Last seen</dt>
              <dd title={agent.lastSeenAt ?? undefined}>{relativeTime(agent.lastSeenAt)}</dd>
              <dt className="text-muted-foreground">Enrolled</dt>
              <dd>{formatTime(agent.enrolledAt)}</dd>
              <dt className="text-muted-foreground">Version</dt>
              <dd className="font-mono text-xs">{agent.version}</dd>
            </dl>
          ) : null}
          <Field id="revoke-reason" label="Reason">
            <Input
              id="revoke-reason"
              required
              placeholder="host decommissioned"
              {...form.register('reason')}
            />
          </Field>
          <DialogFooter>
            <Button type="button" variant="outline" onClick={onClose}>
              Keep it
            </Button>
            <Button type="submit" variant="destructive">
              Revoke agent
            </Button>
          </DialogFooter>
        </form>
      </DialogContent>
    </Dialog>
  );
}
