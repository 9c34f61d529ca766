'use client';
import { useState, type FormEvent } from 'react';
import { LogInIcon } from 'lucide-react';
import { Alert } from '../../components/ui/alert';
import { Button } from '../../components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../components/ui/card';
import { Input } from '../../components/ui/input';
import { Label } from '../../components/ui/label';
import { ThemeToggle } from '../../components/theme-toggle';
import { safeNext } from '../../lib/safe-next';

export default function SignInPage() {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

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
        <CardContent>
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
              <Input id="password" name="password" type="password" autoComplete="current-password" required />
            </div>
            {error ? <Alert id="sign-in-error" variant="destructive" title={error} /> : null}
            <Button type="submit" disabled={busy}>
              <LogInIcon aria-hidden="true" />
              {busy ? 'Signing in…' : 'Sign in'}
            </Button>
          </form>
        </CardContent>
      </Card>
    </main>
  );
}
