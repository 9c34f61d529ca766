'use client';
import { useState } from 'react';
import { useForm } from 'react-hook-form';
import { zodResolver } from '@hookform/resolvers/zod';
import { CreateUser, ROLES, Role } from '@pyreach/protocol/api';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card, CardContent, CardHeader, CardTitle } from '../../../components/ui/card';
import { Input, NativeSelect } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { api, errorMessage, useCall } from '../../../lib/client/api';
import { useUser } from '../../../lib/client/session';
import { formatTime } from '../../../lib/client/utils';

const EMPTY: CreateUser = { email: '', name: '', password: '', role: 'viewer' };

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
              </TR>
            </THead>
            <TBody>
              {(data?.users ?? []).map((u) => (
                <TR key={u.id}>
                  <TD className="font-medium">
                    {u.name} {u.id === me.id ? <Badge variant="outline">you</Badge> : null}{' '}
                    {u.banned ? <Badge variant="destructive">banned</Badge> : null}
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
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
    </div>
  );
}
