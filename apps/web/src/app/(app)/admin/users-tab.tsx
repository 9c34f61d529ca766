'use client';
import { useState } from 'react';
import { useForm } from 'react-hook-form';
import { zodResolver } from '@hookform/resolvers/zod';
import { CreateUser, ROLES, Role } from '@pyreach/protocol/api';
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
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  // The API's own body schema checks the form (email, 12+ character password) before anything is sent.
  const form = useForm<CreateUser>({ defaultValues: EMPTY, resolver: zodResolver(CreateUser) });
  const bad = form.formState.errors;

  const create = form.handleSubmit(async (body) => {
    setMsg(null);
    try {
      await api('createUser', { body });
      setMsg({ ok: true, text: `Created ${body.email}` });
      form.reset(EMPTY);
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  });
  async function setRole(id: string, role: Role) {
    setMsg(null);
    try {
      await api('setUserRole', { params: { id }, body: { role } });
      reload();
    } catch (err) {
      setMsg({ ok: false, text: errorMessage(err) });
    }
  }
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
