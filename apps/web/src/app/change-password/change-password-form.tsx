'use client';
import { useState, type FormEvent } from 'react';
import { KeyRoundIcon } from 'lucide-react';
import { Alert } from '../../components/ui/alert';
import { Button } from '../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../components/ui/card';
import { Input } from '../../components/ui/input';
import { Field } from '../../components/ui/label';

const MIN = 12;

/**
 * The auth library's own change-password call (it checks the current password; its route records
 * `user.password.changed` and lifts the temporary-password flag). Other sessions of the person end with it.
 */
export function ChangePasswordForm({ email, required }: { email: string; required: boolean }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function onSubmit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const currentPassword = String(form.get('current') ?? '');
    const newPassword = String(form.get('new') ?? '');
    if (newPassword.length < MIN) return setError(`The new password needs ${MIN} or more characters.`);
    if (newPassword !== String(form.get('confirm') ?? '')) return setError('The two new passwords differ.');
    if (newPassword === currentPassword) return setError('Choose a password other than the temporary one.');
    setBusy(true);
    setError(null);
    let res: Response;
    try {
      res = await fetch('/api/auth/change-password', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ currentPassword, newPassword, revokeOtherSessions: true }),
      });
    } catch {
      setBusy(false);
      return setError('The server could not be reached. Retry in a moment.');
    }
    setBusy(false);
    if (res.ok) {
      window.location.assign('/');
      return;
    }
    const body = (await res.json().catch(() => null)) as {
      message?: string;
      error?: { message?: string };
    } | null;
    setError(
      res.status === 400 || res.status === 401
        ? 'The current password is wrong, or the new one is not accepted.'
        : (body?.error?.message ?? body?.message ?? `Refused (${res.status}).`),
    );
  }

  return (
    <main className="grid min-h-dvh place-items-center bg-muted/40 px-4">
      <Card className="w-full max-w-sm">
        <CardHeader>
          <CardTitle>
            <span className="text-lg">Choose a new password</span>
          </CardTitle>
          <CardDescription>
            {required
              ? `An admin set a temporary password for ${email}. Choose your own before you continue.`
              : `Change the password of ${email}.`}
          </CardDescription>
        </CardHeader>
        <CardContent>
          <form onSubmit={onSubmit} className="grid gap-4" noValidate>
            <Field id="current" label={required ? 'Temporary password' : 'Current password'}>
              <Input id="current" name="current" type="password" autoComplete="current-password" required />
            </Field>
            <Field id="new" label="New password" hint={`${MIN}+ characters`}>
              <Input
                id="new"
                name="new"
                type="password"
                autoComplete="new-password"
                minLength={MIN}
                required
              />
            </Field>
            <Field id="confirm" label="New password again">
              <Input id="confirm" name="confirm" type="password" autoComplete="new-password" required />
            </Field>
            {error ? <Alert variant="destructive" title={error} /> : null}
            <Button type="submit" disabled={busy}>
              <KeyRoundIcon aria-hidden="true" />
              {busy ? 'Saving…' : 'Set new password'}
            </Button>
          </form>
        </CardContent>
      </Card>
    </main>
  );
}
