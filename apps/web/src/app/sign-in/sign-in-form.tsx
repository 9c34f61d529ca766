'use client';
import { useEffect, useState, type FormEvent } from 'react';
import { KeyRoundIcon, LogInIcon } from 'lucide-react';
import type { SignInOptions } from '@pyreach/protocol/api';
import { Alert } from '../../components/ui/alert';
import { Button } from '../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../components/ui/card';
import { Input } from '../../components/ui/input';
import { Label } from '../../components/ui/label';
import { ThemeToggle } from '../../components/theme-toggle';
import { safeNext } from '../../lib/safe-next';
import { startSso } from '../../lib/client/sso';

/** What the provider's callback said went wrong (better-auth's `?error=` codes), for a person. */
function ssoError(code: string | null): string | null {
  if (!code) return null;
  if (code === 'account_not_linked')
    return 'An account with this e-mail already exists here and is not linked to your SSO identity. Ask an admin.';
  if (code === 'access_denied') return 'The sign-in was cancelled at the identity provider.';
  return `Single sign-on failed (${code.slice(0, 80)}). Try again or ask an admin.`;
}

export function SignInForm({ options }: { options: SignInOptions }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // The provider's callback comes back here with ?error= when it refused (read after hydration).
  useEffect(() => {
    const failed = ssoError(new URLSearchParams(window.location.search).get('error'));
    if (failed) setError(failed);
  }, []);

  async function onSso() {
    if (!options.sso) return;
    setBusy(true);
    setError(null);
    const next = safeNext(new URLSearchParams(window.location.search).get('next'), window.location.origin);
    const failed = await startSso(options.sso.providerId, next, '/sign-in');
    if (failed) {
      setBusy(false);
      setError(failed);
    }
  }

  async function onSubmit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const form = new FormData(e.currentTarget);
    let res: Response;
    try {
      res = await fetch('/api/auth/sign-in/email', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: form.get('email'), password: form.get('password') }),
      });
    } catch {
      setBusy(false);
      setError('The server could not be reached. Retry in a moment.');
      return;
    }
    setBusy(false);
    if (res.ok) {
      const next = new URLSearchParams(window.location.search).get('next');
      window.location.assign(safeNext(next, window.location.origin));
      return;
    }
    setError(
      res.status === 429 ? 'Too many attempts. Wait a minute and try again.' : 'Email or password is wrong.',
    );
  }

  return (
    <main className="grid min-h-dvh place-items-center bg-muted/40 px-4">
      <div className="absolute top-3 right-3">
        <ThemeToggle />
      </div>
      <Card className="w-full max-w-sm">
        <CardHeader>
          <div className="mb-2 flex items-center gap-2 font-semibold">
            <span
              aria-hidden="true"
              className="grid size-7 place-items-center rounded-md bg-primary text-sm font-bold text-primary-foreground"
            >
              P
            </span>
            Pyreach
          </div>
          <CardTitle>
            <span className="text-lg">Sign in to Pyreach</span>
          </CardTitle>
          <CardDescription>Governed remote execution into live Python processes.</CardDescription>
        </CardHeader>
        <CardContent className="grid gap-4">
          {options.sso ? (
            <Button
              type="button"
              variant={options.password ? 'outline' : 'default'}
              onClick={() => void onSso()}
              disabled={busy}
            >
              <KeyRoundIcon aria-hidden="true" />
              Sign in with {options.sso.name}
            </Button>
          ) : null}
          {options.password ? (
            <form
              onSubmit={onSubmit}
              className="grid gap-4"
              aria-describedby={error ? 'sign-in-error' : undefined}
            >
              <div className="grid gap-1.5">
                <Label htmlFor="email">Email</Label>
                <Input id="email" name="email" type="email" autoComplete="username" required autoFocus />
              </div>
              <div className="grid gap-1.5">
                <Label htmlFor="password">Password</Label>
                <Input
                  id="password"
                  name="password"
                  type="password"
                  autoComplete="current-password"
                  required
                />
              </div>
              <Button type="submit" disabled={busy}>
                <LogInIcon aria-hidden="true" />
                {busy ? 'Signing in…' : 'Sign in'}
              </Button>
            </form>
          ) : null}
          {error ? <Alert id="sign-in-error" variant="destructive" title={error} /> : null}
        </CardContent>
      </Card>
    </main>
  );
}
