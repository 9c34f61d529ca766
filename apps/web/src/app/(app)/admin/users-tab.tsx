'use client';
import { useState } from 'react';
import { useForm } from 'react-hook-form';
import { zodResolver } from '@hookform/resolvers/zod';
import { CreateUser, ROLES, Role, type GovernanceChangeRow } from '@pyreach/protocol/api';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { CopyButton } from '../../../components/ui/copy-button';
import { Card, CardContent, CardHeader, CardTitle } from '../../../components/ui/card';
import { Input, NativeSelect } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { api, errorMessage, useCall } from '../../../lib/client/api';
import { useUser } from '../../../lib/client/session';
import { formatTime } from '../../../lib/client/utils';

const EMPTY: CreateUser = { email: '', name: '', password: '', role: 'viewer' };

/** 18 random bytes as base64url: 24 characters, above the 12-character minimum, typed once by the user. */
function temporaryPassword(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes))
    .replaceAll('+', '-')
    .replaceAll('/', '_');
}

export function UsersTab() {
  const me = useUser();
  const { data, error, loading, reload } = useCall('listUsers', {});
  const changes = useCall('listGovernanceChanges', { query: { open: 'true' } });
  const grants = useCall('listBreakGlassGrants', {});
  const activeGrant = (userId: string) =>
    grants.data?.grants.find((g) => g.userId === userId && g.status === 'active') ?? null;
  async function grantBreakGlass(id: string, email: string) {
    const reason = window.prompt(`Why may ${email} run emergency requests without approval?`);
    if (!reason) return;
    const hours = window.prompt('For how many hours? (empty: until revoked)', '24');
    setMsg(null);
    try {
      const expiresAt =
        hours && Number(hours) > 0
          ? new Date(Date.now() + Number(hours) * 3_600_000).toISOString()
          : undefined;
      await api('createBreakGlassGrant', {
        body: { userId: id, reason, ...(expiresAt ? { expiresAt } : {}) },
      });
      setMsg({ ok: true, text: `Break-glass granted to ${email}` });
      grants.reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  async function revokeBreakGlass(grantId: string) {
    setMsg(null);
    try {
      await api('revokeBreakGlassGrant', { params: { id: grantId }, body: {} });
      grants.reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  // The API's own body schema checks the form (email, 12+ character password) before anything is sent.
  const form = useForm<CreateUser>({ defaultValues: EMPTY, resolver: zodResolver(CreateUser) });
  const bad = form.formState.errors;

  const create = form.handleSubmit(async (body) => {
    setMsg(null);
    try {
      const { change } = await api('createUser', { body });
      setMsg({ ok: true, text: `Created ${body.email}${governanceNote(change)}` });
      changes.reload();
      form.reset(EMPTY);
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  });
  async function setRole(id: string, role: Role) {
    setMsg(null);
    try {
      const { change } = await api('setUserRole', { params: { id }, body: { role } });
      if (change) setMsg({ ok: true, text: `Role change recorded${governanceNote(change)}` });
      changes.reload();
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  const names = Object.fromEntries((data?.users ?? []).map((u) => [u.id, u.email]));
  // The row whose disable reason is being typed, and the temporary password just set (shown once, never again).
  const [disabling, setDisabling] = useState<{ id: string; reason: string } | null>(null);
  const [issued, setIssued] = useState<{ email: string; password: string } | null>(null);
  async function setDisabled(id: string, disabled: boolean, reason?: string) {
    setMsg(null);
    try {
      await api('setUserDisabled', { params: { id }, body: disabled ? { disabled, reason } : { disabled } });
      setDisabling(null);
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  async function issuePassword(id: string, email: string) {
    setMsg(null);
    setIssued(null);
    const password = temporaryPassword();
    try {
      await api('setTemporaryPassword', { params: { id }, body: { password } });
      setIssued({ email, password });
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
  return (
    <div className="grid gap-4">
      <GovernanceChanges
        changes={changes.data?.changes ?? []}
        me={me.id}
        names={names}
        onDecided={() => {
          changes.reload();
          reload();
        }}
      />
      <Card>
        <CardHeader>
          <CardTitle>Add a user</CardTitle>
        </CardHeader>
        <CardContent>
          <form onSubmit={create} noValidate className="grid gap-3 sm:grid-cols-5">
            <Field id="nu-email" label="Email" error={bad.email?.message}>
              <Input id="nu-email" type="email" required {...form.register('email')} />
            </Field>
            <Field id="nu-name" label="Name" error={bad.name?.message}>
              <Input id="nu-name" required {...form.register('name')} />
            </Field>
            <Field id="nu-password" label="Password" hint="12+ characters" error={bad.password?.message}>
              <Input
                id="nu-password"
                type="password"
                minLength={12}
                required
                autoComplete="new-password"
                {...form.register('password')}
              />
            </Field>
            <Field id="nu-role" label="Role">
              <NativeSelect id="nu-role" {...form.register('role')}>
                {ROLES.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </NativeSelect>
            </Field>
            <div className="flex items-start pt-5">
              <Button type="submit" disabled={form.formState.isSubmitting}>
                Create user
              </Button>
            </div>
          </form>
          {msg ? (
            <Alert className="mt-3" variant={msg.ok ? 'success' : 'destructive'} title={msg.text} />
          ) : null}
          {issued ? (
            <Alert
              className="mt-3"
              variant="warning"
              title={`Temporary password for ${issued.email}`}
              data-testid="temporary-password"
            >
              <p>
                Shown only now: hand it over in person or by a trusted channel. Their sessions have ended; at
                the next sign-in they must choose a new password before anything else.
              </p>
              <div className="mt-2 flex items-center gap-2">
                <code data-testid="temporary-password-value" className="rounded bg-muted px-2 py-1 font-mono">
                  {issued.password}
                </code>
                <CopyButton text={issued.password} />
                <Button type="button" size="sm" variant="ghost" onClick={() => setIssued(null)}>
                  Done
                </Button>
              </div>
            </Alert>
          ) : null}
        </CardContent>
      </Card>
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : (
        <Card>
          <Table aria-label="Users">
            <THead>
              <TR>
                <TH>Name</TH>
                <TH>Email</TH>
                <TH>Role</TH>
                <TH>Since</TH>
                <TH>Break-glass</TH>
                <TH>Access</TH>
              </TR>
            </THead>
            <TBody>
              {(data?.users ?? []).map((u) => (
                <TR key={u.id}>
                  <TD className="font-medium">
                    {u.name} {u.id === me.id ? <Badge variant="outline">you</Badge> : null}{' '}
                    {u.banned ? <Badge variant="destructive">disabled</Badge> : null}
                  </TD>
                  <TD>{u.email}</TD>
                  <TD>
                    <NativeSelect
                      aria-label={`Role of ${u.email}`}
                      className="h-8 w-36"
                      value={u.role}
                      disabled={u.id === me.id}
                      onChange={(e) => void setRole(u.id, Role.parse(e.target.value))}
                    >
                      {ROLES.map((r) => (
                        <option key={r}>{r}</option>
                      ))}
                    </NativeSelect>
                  </TD>
                  <TD className="text-muted-foreground">{formatTime(u.createdAt)}</TD>
                  <TD>
                    {(() => {
                      const g = activeGrant(u.id);
                      if (g)
                        return (
                          <span className="flex items-center gap-2">
                            <Badge variant="destructive" title={g.reason}>
                              {g.expiresAt ? `until ${formatTime(g.expiresAt)}` : 'until revoked'}
                            </Badge>
                            <Button size="sm" variant="outline" onClick={() => void revokeBreakGlass(g.id)}>
                              Revoke
                            </Button>
                          </span>
                        );
                      if (u.id === me.id || u.banned || (u.role !== 'operator' && u.role !== 'admin'))
                        return null;
                      return (
                        <Button
                          size="sm"
                          variant="outline"
                          aria-label={`Grant break-glass to ${u.email}`}
                          onClick={() => void grantBreakGlass(u.id, u.email)}
                        >
                          Grant
                        </Button>
                      );
                    })()}
                  </TD>
                  <TD>
                    {u.id === me.id ? null : disabling?.id === u.id ? (
                      <form
                        className="flex items-center gap-2"
                        onSubmit={(e) => {
                          e.preventDefault();
                          void setDisabled(u.id, true, disabling.reason.trim());
                        }}
                      >
                        <Input
                          aria-label={`Why disable ${u.email}`}
                          placeholder="Reason (3+ characters)"
                          className="h-8 w-52"
                          minLength={3}
                          required
                          autoFocus
                          value={disabling.reason}
                          onChange={(e) => setDisabling({ id: u.id, reason: e.target.value })}
                        />
                        <Button type="submit" size="sm" variant="destructive">
                          Confirm disable
                        </Button>
                        <Button type="button" size="sm" variant="ghost" onClick={() => setDisabling(null)}>
                          Cancel
                        </Button>
                      </form>
                    ) : (
                      <div className="flex items-center gap-2">
                        {u.banned ? (
                          <Button
                            type="button"
                            size="sm"
                            variant="outline"
                            aria-label={`Enable ${u.email}`}
                            onClick={() => void setDisabled(u.id, false)}
                          >
                            Enable
                          </Button>
                        ) : (
                          <Button
                            type="button"
                            size="sm"
                            variant="outline"
                            aria-label={`Disable ${u.email}`}
                            onClick={() => setDisabling({ id: u.id, reason: '' })}
                          >
                            Disable
                          </Button>
                        )}
                        <Button
                          type="button"
                          size="sm"
                          variant="outline"
                          aria-label={`Set a temporary password for ${u.email}`}
                          onClick={() => void issuePassword(u.id, u.email)}
                        >
                          Temporary password
                        </Button>
                      </div>
                    )}
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
    </div>
  );
}

/** What the answer to a role write means for who may approve. */
function governanceNote(change: GovernanceChangeRow | null): string {
  if (change?.state === 'pending')
    return ` — the ${String(change.data.role)} role takes effect when a second admin confirms it`;
  if (change?.state === 'unconfirmed')
    return ` — no second admin exists to confirm the ${String(change.data.role)} role: what they approve is marked “unconfirmed governance”`;
  return '';
}

/**
 * Changes that widen who may approve, waiting for a second admin (pending) or in effect without one
 * (unconfirmed). Confirming needs a recent sign-in, like a vote; the server refuses your own.
 */
function GovernanceChanges({
  changes,
  me,
  names,
  onDecided,
}: {
  changes: GovernanceChangeRow[];
  me: string;
  names: Record<string, string>;
  onDecided: () => void;
}) {
  const [err, setErr] = useState<unknown>(null);
  if (changes.length === 0) return null;
  async function decide(id: string, decision: 'confirm' | 'reject') {
    setErr(null);
    try {
      if (decision === 'confirm') await api('confirmGovernanceChange', { params: { id }, body: {} });
      else await api('rejectGovernanceChange', { params: { id }, body: {} });
      onDecided();
    } catch (e) {
      setErr(e);
    }
  }
  return (
    <Card data-testid="governance-changes">
      <CardHeader>
        <CardTitle>Changes waiting for a second admin</CardTitle>
      </CardHeader>
      <CardContent className="grid gap-3">
        {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
        <Table aria-label="Governance changes">
          <THead>
            <TR>
              <TH>Change</TH>
              <TH>Why it needs a second admin</TH>
              <TH>By</TH>
              <TH>State</TH>
              <TH />
            </TR>
          </THead>
          <TBody>
            {changes.map((c) => (
              <TR key={c.id} data-testid="governance-change">
                <TD className="font-medium">
                  {c.kind} {names[c.subjectId] ?? c.subjectId}
                </TD>
                <TD className="text-sm">{c.reasons.join('; ')}</TD>
                <TD>{names[c.requestedById] ?? c.requestedById}</TD>
                <TD>
                  <Badge variant={c.state === 'pending' ? 'warning' : 'destructive'}>{c.state}</Badge>
                </TD>
                <TD className="flex gap-2">
                  {c.requestedById === me ? (
                    <span className="text-xs text-muted-foreground">yours: another admin confirms</span>
                  ) : (
                    <>
                      <Button size="sm" onClick={() => void decide(c.id, 'confirm')}>
                        Confirm
                      </Button>
                      {c.state === 'pending' ? (
                        <Button size="sm" variant="outline" onClick={() => void decide(c.id, 'reject')}>
                          Reject
                        </Button>
                      ) : null}
                    </>
                  )}
                </TD>
              </TR>
            ))}
          </TBody>
        </Table>
      </CardContent>
    </Card>
  );
}
