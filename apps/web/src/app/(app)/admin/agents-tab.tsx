'use client';
import { useEffect, useState } from 'react';
import { useForm } from 'react-hook-form';
import { KeyRoundIcon, ServerIcon } from 'lucide-react';
import type { AgentRow } from '@pyreach/protocol/api';
import { LabelList, NamespaceLabelList, OnlineBadge } from '../../../components/status';
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
import { formatNamespaceLabels, parseLabels, parseNamespaceLabels } from '../../../lib/client/labels';
import { useUiEvent } from '../../../lib/client/socket';
import { formatTime, relativeTime } from '../../../lib/client/utils';

export function AgentsTab() {
  const { data, error, loading, reload } = useCall('listAgents', { query: { includeRevoked: 'true' } });
  useUiEvent('fleet:changed', () => reload());
  const [revoking, setRevoking] = useState<AgentRow | null>(null);
  const [declaring, setDeclaring] = useState<AgentRow | null>(null);
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
                    <NamespaceLabelList namespaceLabels={a.effectiveNamespaceLabels} />
                    {a.namespaceLabels ? (
                      <div className="text-xs text-muted-foreground">namespaces: this agent’s own</div>
                    ) : null}
                    {a.namespaceLabelsUntrusted ? (
                      <div className="text-xs text-destructive" title={a.namespaceLabelsUntrusted}>
                        namespaces: not signed by the control plane — its pods are refused until declared
                        again
                      </div>
                    ) : null}
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{relativeTime(a.lastSeenAt)}</TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{formatTime(a.enrolledAt)}</TD>
                  <TD className="text-right">
                    {!a.revokedAt ? (
                      <Button
                        size="sm"
                        variant="outline"
                        aria-label={`Namespace labels of ${a.name} (${a.id})`}
                        onClick={() => setDeclaring(a)}
                      >
                        Namespaces
                      </Button>
                    ) : null}{' '}
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
      <NamespaceDialog
        agent={declaring}
        onClose={() => setDeclaring(null)}
        onSaved={() => {
          setDeclaring(null);
          reload();
        }}
      />
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
  namespaceLabels: string;
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
    defaultValues: {
      labels: '',
      namespaceLabels: '',
      ttlMinutes: 60,
      note: '',
      maxUses: 1,
      unlimited: false,
      hostPattern: '',
    },
  });
  const [token, setToken] = useState<{ token: string; expiresAt: string } | null>(null);
  const [change, setChange] = useState<{ state: string; reasons: string[] } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const origin = typeof window !== 'undefined' ? window.location.origin : '';
  const create = form.handleSubmit(async (v) => {
    setErr(null);
    const labels = parseLabels(v.labels);
    if (labels.error) {
      form.setError('labels', { message: labels.error });
      return;
    }
    const declared = parseNamespaceLabels(v.namespaceLabels);
    if (declared.error) {
      form.setError('namespaceLabels', { message: declared.error });
      return;
    }
    try {
      const r = await api('createJoinToken', {
        body: {
          labels: labels.labels,
          ...(Object.keys(declared.namespaceLabels).length
            ? { namespaceLabels: declared.namespaceLabels }
            : {}),
          ttlMinutes: v.ttlMinutes,
          maxUses: v.unlimited ? null : v.maxUses,
          ...(v.hostPattern.trim() ? { hostPattern: v.hostPattern.trim() } : {}),
          ...(v.note.trim() ? { note: v.note.trim() } : {}),
        },
      });
      setToken(r.joinToken);
      setChange(r.change);
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
          <Field
            id="jt-namespace-labels"
            label="Namespace labels"
            hint="policy labels per namespace: payments: env=prod; sandbox: env=dev"
            error={form.formState.errors.namespaceLabels?.message}
          >
            <Input
              id="jt-namespace-labels"
              className="font-mono"
              placeholder="payments: env=prod"
              {...form.register('namespaceLabels')}
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
        {change ? <ChangeNotice change={change} /> : null}
        {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      </CardContent>
    </Card>
  );
}

/** What a loosening namespace declaration became: waiting for a second admin, or applied unconfirmed. */
function ChangeNotice({ change }: { change: { state: string; reasons: string[] } }) {
  return (
    <Alert
      variant="warning"
      title={
        change.state === 'pending'
          ? 'The namespace labels loosen a policy: a second admin must confirm them (Governance) before they apply'
          : 'The namespace labels loosen a policy and apply unconfirmed (no second admin): affected requests are flagged'
      }
    >
      <ul className="list-disc pl-4 text-xs">
        {change.reasons.map((r) => (
          <li key={r}>{r}</li>
        ))}
      </ul>
    </Alert>
  );
}

/** An agent's own namespace declaration (overrides its join token's), or back to the token's. */
function NamespaceDialog({
  agent,
  onClose,
  onSaved,
}: {
  agent: AgentRow | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const [text, setText] = useState('');
  const [followToken, setFollowToken] = useState(true);
  const [err, setErr] = useState<unknown>(null);
  const [parseError, setParseError] = useState<string | null>(null);
  const [change, setChange] = useState<{ state: string; reasons: string[] } | null>(null);
  useEffect(() => {
    setText(formatNamespaceLabels(agent?.namespaceLabels ?? agent?.effectiveNamespaceLabels ?? {}));
    setFollowToken(agent?.namespaceLabels === null);
    setErr(null);
    setParseError(null);
    setChange(null);
  }, [agent]);
  const save = async () => {
    if (!agent) return;
    const parsed = parseNamespaceLabels(text);
    if (!followToken && parsed.error) {
      setParseError(parsed.error);
      return;
    }
    try {
      const r = await api('setAgentNamespaceLabels', {
        params: { id: agent.id },
        body: { namespaceLabels: followToken ? null : parsed.namespaceLabels },
      });
      if (r.change) setChange(r.change);
      else onSaved();
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <Dialog open={agent !== null} onOpenChange={(o) => !o && onClose()}>
      <DialogContent>
        <DialogHeader>
          <DialogTitle>Namespace labels of {agent?.name}</DialogTitle>
          <DialogDescription>
            Which Kubernetes namespaces carry which policy labels for this agent’s processes. The namespace is
            what the agent reports; a namespace declared nowhere adds nothing.
          </DialogDescription>
        </DialogHeader>
        <label className="flex items-center gap-2 text-sm">
          <input type="checkbox" checked={followToken} onChange={(e) => setFollowToken(e.target.checked)} />{' '}
          Follow its join token’s declaration
        </label>
        <Field id="agent-namespace-labels" label="Namespace labels" error={parseError ?? undefined}>
          <Input
            id="agent-namespace-labels"
            className="font-mono"
            disabled={followToken}
            value={text}
            placeholder="payments: env=prod; sandbox: env=dev"
            onChange={(e) => setText(e.target.value)}
          />
        </Field>
        {change ? <ChangeNotice change={change} /> : null}
        {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
        <DialogFooter>
          <Button type="button" variant="outline" onClick={change ? onSaved : onClose}>
            {change ? 'Close' : 'Cancel'}
          </Button>
          {change ? null : (
            <Button type="button" onClick={() => void save()}>
              Save
            </Button>
          )}
        </DialogFooter>
      </DialogContent>
    </Dialog>
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
                  <NamespaceLabelList namespaceLabels={t.namespaceLabels} />
                  {t.pendingNamespaceLabels ? (
                    <div className="text-xs text-muted-foreground">
                      waiting for a second admin:{' '}
                      <NamespaceLabelList namespaceLabels={t.pendingNamespaceLabels} />
                    </div>
                  ) : null}
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
