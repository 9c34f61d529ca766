'use client';
/**
 * Admin: service accounts (automation identities with a role) and their API tokens. A token is shown once, when
 * it is minted, with a copy button; afterwards only its prefix (`pyr_<id>_…`), expiry and last use are listed,
 * and it can be revoked (refused from the next call on).
 */
import { useState } from 'react';
import { useForm } from 'react-hook-form';
import { zodResolver } from '@hookform/resolvers/zod';
import { BotIcon, KeyRoundIcon } from 'lucide-react';
import {
  CreateServiceAccount,
  DEFAULT_TOKEN_TTL_DAYS,
  MAX_TOKEN_TTL_DAYS,
  ROLES,
  type ServiceAccountRow,
} from '@pyreach/protocol/api';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../components/ui/card';
import { CopyButton } from '../../../components/ui/copy-button';
import { Input, NativeSelect } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { EmptyState, ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { api, errorMessage, useCall } from '../../../lib/client/api';
import { formatTime, relativeTime } from '../../../lib/client/utils';

const EMPTY: CreateServiceAccount = { name: '', role: 'operator', description: '' };

export function ServiceAccountsTab() {
  const { data, error, loading, reload } = useCall('listServiceAccounts', {});
  const [selected, setSelected] = useState<string | null>(null);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  // The API's own body schema checks the form (the name's characters, a known role) before anything is sent.
  const form = useForm<CreateServiceAccount>({
    defaultValues: EMPTY,
    resolver: zodResolver(CreateServiceAccount),
  });
  const bad = form.formState.errors;
  const create = form.handleSubmit(async ({ description, ...body }) => {
    setMsg(null);
    try {
      const r = await api('createServiceAccount', {
        body: { ...body, ...(description?.trim() ? { description: description.trim() } : {}) },
      });
      setMsg({ ok: true, text: `Created ${r.serviceAccount.name} (${r.serviceAccount.role})` });
      form.reset(EMPTY);
      setSelected(r.serviceAccount.id);
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  });
  const accounts = data?.serviceAccounts ?? [];
  const current = accounts.find((a) => a.id === selected) ?? null;
  return (
    <div className="grid gap-4">
      <Card>
        <CardHeader>
          <CardTitle>Add a service account</CardTitle>
          <CardDescription>
            For CI jobs, runbooks and bots: it acts with its role through API tokens (
            <code className="font-mono">Authorization: Bearer pyr_…</code>), can file, read, cancel and
            export, and never approves. You are its owner: your own votes do not count on what it files.
          </CardDescription>
        </CardHeader>
        <CardContent>
          <form onSubmit={create} noValidate className="grid gap-3 sm:grid-cols-4">
            <Field id="sa-name" label="Name" hint="lowercase, e.g. ci-deploy" error={bad.name?.message}>
              <Input id="sa-name" className="font-mono" required {...form.register('name')} />
            </Field>
            <Field id="sa-role" label="Role" error={bad.role?.message}>
              <NativeSelect id="sa-role" {...form.register('role')}>
                {ROLES.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </NativeSelect>
            </Field>
            <Field id="sa-description" label="Description" error={bad.description?.message}>
              <Input id="sa-description" {...form.register('description')} />
            </Field>
            <div className="flex items-start pt-5">
              <Button type="submit" disabled={form.formState.isSubmitting}>
                <BotIcon aria-hidden="true" /> Create service account
              </Button>
            </div>
          </form>
          {msg ? (
            <Alert className="mt-3" variant={msg.ok ? 'success' : 'destructive'} title={msg.text} />
          ) : null}
        </CardContent>
      </Card>
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : accounts.length === 0 ? (
        <EmptyState title="No service accounts" icon={<BotIcon />}>
          Create one above, then mint a token for it.
        </EmptyState>
      ) : (
        <Card>
          <Table aria-label="Service accounts">
            <THead>
              <TR>
                <TH>Name</TH>
                <TH>Role</TH>
                <TH>Active tokens</TH>
                <TH>Last used</TH>
                <TH>Created</TH>
                <TH>
                  <span className="sr-only">Actions</span>
                </TH>
              </TR>
            </THead>
            <TBody>
              {accounts.map((a) => (
                <TR key={a.id} data-testid="service-account-row">
                  <TD>
                    <div className="font-medium font-mono">{a.name}</div>
                    {a.description ? (
                      <div className="text-xs text-muted-foreground">{a.description}</div>
                    ) : null}
                  </TD>
                  <TD>
                    <Badge variant="outline">{a.role}</Badge>
                  </TD>
                  <TD>{a.activeTokens}</TD>
                  <TD className="whitespace-nowrap text-muted-foreground">
                    {a.lastUsedAt ? relativeTime(a.lastUsedAt) : 'never'}
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{formatTime(a.createdAt)}</TD>
                  <TD className="text-right">
                    <Button
                      size="sm"
                      variant={a.id === selected ? 'default' : 'outline'}
                      aria-label={`Tokens of ${a.name}`}
                      onClick={() => setSelected(a.id === selected ? null : a.id)}
                    >
                      <KeyRoundIcon aria-hidden="true" /> Tokens
                    </Button>
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      {current ? <TokensCard key={current.id} account={current} onChanged={reload} /> : null}
    </div>
  );
}

/** One account's tokens: mint (shown once, with a copy button), list with expiry and last use, revoke. */
function TokensCard({ account, onChanged }: { account: ServiceAccountRow; onChanged: () => void }) {
  const { data, error, reload } = useCall('listApiTokens', { params: { id: account.id } });
  const [ttlDays, setTtlDays] = useState(String(DEFAULT_TOKEN_TTL_DAYS));
  const [note, setNote] = useState('');
  // The clear token lives in this component's state only: gone with Done, or when another account is opened.
  const [minted, setMinted] = useState<{ token: string; expiresAt: string } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  async function mint(e: React.FormEvent) {
    e.preventDefault();
    setErr(null);
    setMinted(null);
    try {
      const days = Number(ttlDays);
      const r = await api('createApiToken', {
        params: { id: account.id },
        body: {
          ...(ttlDays.trim() ? { ttlDays: days } : {}),
          ...(note.trim() ? { note: note.trim() } : {}),
        },
      });
      setMinted({ token: r.token, expiresAt: r.expiresAt });
      setNote('');
      reload();
      onChanged();
    } catch (error) {
      setErr(error);
    }
  }
  async function revoke(tokenId: string) {
    setErr(null);
    try {
      await api('revokeApiToken', { params: { tokenId } });
      reload();
      onChanged();
    } catch (error) {
      setErr(error);
    }
  }
  const tokens = data?.tokens ?? [];
  return (
    <Card data-testid="service-account-tokens">
      <CardHeader>
        <CardTitle>
          Tokens of <span className="font-mono">{account.name}</span>
        </CardTitle>
        <CardDescription>
          A token acts as {account.name} ({account.role}) until it expires or is revoked. It is shown once.
        </CardDescription>
      </CardHeader>
      <CardContent className="grid gap-3">
        <form onSubmit={(e) => void mint(e)} noValidate className="grid gap-3 sm:grid-cols-[8rem_1fr_auto]">
          <Field id="tok-ttl" label="Valid (days)" hint={`1–${MAX_TOKEN_TTL_DAYS}`}>
            <Input
              id="tok-ttl"
              type="number"
              min={1}
              max={MAX_TOKEN_TTL_DAYS}
              value={ttlDays}
              onChange={(e) => setTtlDays(e.target.value)}
            />
          </Field>
          <Field id="tok-note" label="Note">
            <Input
              id="tok-note"
              placeholder="GitHub Actions, deploy job"
              value={note}
              onChange={(e) => setNote(e.target.value)}
            />
          </Field>
          <div className="pt-5">
            <Button type="submit">
              <KeyRoundIcon aria-hidden="true" /> Mint token
            </Button>
          </div>
        </form>
        {minted ? (
          <Alert
            variant="warning"
            title="Copy the token now: it is shown only once"
            data-testid="minted-token"
          >
            <div className="mt-2 flex flex-wrap items-center gap-2">
              <code
                data-testid="minted-token-value"
                className="break-all rounded bg-muted px-2 py-1 font-mono text-xs"
              >
                {minted.token}
              </code>
              <CopyButton text={minted.token} label="Copy token" />
              <span className="text-xs">expires {formatTime(minted.expiresAt)}</span>
              <Button type="button" size="sm" variant="ghost" onClick={() => setMinted(null)}>
                Done
              </Button>
            </div>
          </Alert>
        ) : null}
        {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
        {error ? <ErrorState error={error} onRetry={reload} /> : null}
        {tokens.length > 0 ? (
          <Table aria-label={`Tokens of ${account.name}`}>
            <THead>
              <TR>
                <TH>Token</TH>
                <TH>Note</TH>
                <TH>Status</TH>
                <TH>Expires</TH>
                <TH>Last used</TH>
                <TH>Created</TH>
                <TH>
                  <span className="sr-only">Actions</span>
                </TH>
              </TR>
            </THead>
            <TBody>
              {tokens.map((t) => (
                <TR key={t.id} data-testid="api-token-row">
                  <TD className="font-mono text-xs">{t.prefix}…</TD>
                  <TD>{t.note ?? ''}</TD>
                  <TD>
                    <Badge
                      variant={
                        t.status === 'active' ? 'success' : t.status === 'revoked' ? 'destructive' : 'muted'
                      }
                    >
                      {t.status}
                    </Badge>
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{formatTime(t.expiresAt)}</TD>
                  <TD className="whitespace-nowrap text-muted-foreground">
                    {t.lastUsedAt ? relativeTime(t.lastUsedAt) : 'never'}
                  </TD>
                  <TD className="whitespace-nowrap text-muted-foreground">{formatTime(t.createdAt)}</TD>
                  <TD className="text-right">
                    {t.status === 'active' ? (
                      <Button
                        size="sm"
                        variant="outline"
                        aria-label={`Revoke token ${t.prefix}…`}
                        onClick={() => void revoke(t.id)}
                      >
                        Revoke
                      </Button>
                    ) : null}
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        ) : (
          <p className="text-sm text-muted-foreground">No tokens yet.</p>
        )}
      </CardContent>
    </Card>
  );
}
