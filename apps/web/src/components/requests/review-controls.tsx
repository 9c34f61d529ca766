'use client';
import { useEffect, useState, type FormEvent } from 'react';
import { CheckIcon, KeyRoundIcon, XIcon } from 'lucide-react';
import { api, errorMessage, isApiError } from '../../lib/client/api';
import { useUser } from '../../lib/client/session';
import { startSso } from '../../lib/client/sso';
import type { RequestRow } from '@pyreach/protocol/api';
import { Alert } from '../ui/alert';
import { Button } from '../ui/button';
import {
  Dialog,
  DialogContent,
  DialogDescription,
  DialogFooter,
  DialogHeader,
  DialogTitle,
} from '../ui/dialog';
import { Input, Textarea } from '../ui/input';
import { Field } from '../ui/label';

type Decision = 'approve' | 'reject';

/**
 * An SSO re-authentication leaves the page for the provider; the vote waits here (this tab only) and is sent
 * when the browser comes back signed in again. Bound to the request and a few minutes old at most.
 */
const PENDING_KEY = 'pyreach.pendingVote';
const PENDING_MAX_MS = 10 * 60_000;
interface PendingVote {
  requestId: string;
  decision: Decision;
  comment: string;
  at: number;
}

function takePendingVote(requestId: string): PendingVote | null {
  let pending: PendingVote | null = null;
  try {
    pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? 'null') as PendingVote | null;
  } catch {
    pending = null;
  }
  if (!pending || pending.requestId !== requestId) return null;
  sessionStorage.removeItem(PENDING_KEY);
  if (Date.now() - pending.at > PENDING_MAX_MS) return null;
  return pending.decision === 'approve' || pending.decision === 'reject' ? pending : null;
}

/**
 * Approve / reject with a comment. When the server answers STALE_AUTH (the sign-in is older than the
 * re-authentication window) it asks for the password, signs in again and repeats the vote; an SSO user is sent
 * to the provider with prompt=login and max_age=0 instead, and the vote is sent when they come back.
 */
export function ReviewControls({ request, onDone }: { request: Pick<RequestRow, 'id'>; onDone: () => void }) {
  const user = useUser();
  const [comment, setComment] = useState('');
  const [commentError, setCommentError] = useState<string | null>(null);
  const [busy, setBusy] = useState<Decision | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [reauthFor, setReauthFor] = useState<Decision | null>(null);
  const [password, setPassword] = useState('');
  const [reauthError, setReauthError] = useState<string | null>(null);
  const [reauthBusy, setReauthBusy] = useState(false);

  // Back from the provider: the vote that asked for the fresh sign-in is sent now (or the failure is shown).
  useEffect(() => {
    const pending = takePendingVote(request.id);
    if (!pending) return;
    const failed = new URLSearchParams(window.location.search).get('error');
    setComment(pending.comment);
    if (failed) {
      setError(new Error(`signing in again failed (${failed.slice(0, 80)}); the vote was not sent`));
      return;
    }
    void vote(pending.decision, pending.comment);
    // Once per mount: the pending vote is consumed by takePendingVote.
  }, [request.id]);

  async function reauthSso() {
    if (user.reauth.via !== 'sso' || !reauthFor) return;
    setReauthBusy(true);
    setReauthError(null);
    const pending: PendingVote = { requestId: request.id, decision: reauthFor, comment, at: Date.now() };
    sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
    const here = window.location.pathname + window.location.search.replace(/([?&])error=[^&]*&?/, '$1');
    const failed = await startSso(user.reauth.providerId, here, here, { prompt: 'login', max_age: '0' });
    if (failed) {
      sessionStorage.removeItem(PENDING_KEY);
      setReauthBusy(false);
      setReauthError(failed);
    }
  }

  async function vote(decision: Decision, text: string = comment) {
    if (decision === 'reject' && !text.trim()) {
      setCommentError('Say why you reject it: the requester sees this comment.');
      return;
    }
    setCommentError(null);
    setBusy(decision);
    setError(null);
    try {
      await api('reviewRequest', {
        params: { id: request.id },
        body: { decision, ...(text.trim() ? { comment: text.trim() } : {}) },
      });
      setComment('');
      onDone();
    } catch (err) {
      if (isApiError(err, 'STALE_AUTH')) setReauthFor(decision);
      else setError(err);
    } finally {
      setBusy(null);
    }
  }

  async function reauth(e: FormEvent) {
    e.preventDefault();
    setReauthBusy(true);
    setReauthError(null);
    const res = await fetch('/api/auth/sign-in/email', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: user.email, password }),
    }).catch(() => null);
    setReauthBusy(false);
    if (!res || !res.ok) {
      setReauthError(
        res?.status === 429 ? 'Too many attempts. Wait a minute.' : 'That password is not right.',
      );
      return;
    }
    const decision = reauthFor;
    setPassword('');
    setReauthFor(null);
    if (decision) await vote(decision);
  }

  return (
    <div className="grid gap-3" data-testid="review-controls">
      <Field
        id={`review-comment-${request.id}`}
        label="Comment"
        hint="Shown to the requester and kept in the audit log. Required to reject."
        error={commentError}
      >
        <Textarea
          id={`review-comment-${request.id}`}
          value={comment}
          onChange={(e) => setComment(e.target.value)}
          placeholder="Checked the code and targets; OK for 10 minutes."
          className="min-h-16"
        />
      </Field>
      {error ? (
        <Alert variant="destructive" title="The vote was not recorded">
          {errorMessage(error)}
        </Alert>
      ) : null}
      <div className="flex flex-wrap gap-2">
        <Button type="button" variant="success" onClick={() => void vote('approve')} disabled={busy !== null}>
          <CheckIcon aria-hidden="true" /> {busy === 'approve' ? 'Approving…' : 'Approve'}
        </Button>
        <Button
          type="button"
          variant="destructive"
          onClick={() => void vote('reject')}
          disabled={busy !== null}
        >
          <XIcon aria-hidden="true" /> {busy === 'reject' ? 'Rejecting…' : 'Reject'}
        </Button>
      </div>
      <Dialog open={reauthFor !== null} onOpenChange={(o) => !o && setReauthFor(null)}>
        <DialogContent>
          {user.reauth.via === 'sso' ? (
            <div className="grid gap-4">
              <DialogHeader>
                <DialogTitle className="flex items-center gap-2">
                  <KeyRoundIcon aria-hidden="true" className="size-4" /> Confirm it is you
                </DialogTitle>
                <DialogDescription>
                  Reviewing needs a recent sign-in. Sign in again at {user.reauth.name}; you come back here
                  and your {reauthFor === 'reject' ? 'rejection' : 'approval'} is sent right after.
                </DialogDescription>
              </DialogHeader>
              {reauthError ? <Alert variant="destructive" title={reauthError} /> : null}
              <DialogFooter>
                <Button type="button" variant="outline" onClick={() => setReauthFor(null)}>
                  Cancel
                </Button>
                <Button type="button" disabled={reauthBusy} onClick={() => void reauthSso()}>
                  {reauthBusy ? 'Redirecting…' : `Sign in again with ${user.reauth.name}`}
                </Button>
              </DialogFooter>
            </div>
          ) : (
            <form onSubmit={reauth} className="grid gap-4">
              <DialogHeader>
                <DialogTitle className="flex items-center gap-2">
                  <KeyRoundIcon aria-hidden="true" className="size-4" /> Confirm it is you
                </DialogTitle>
                <DialogDescription>
                  Reviewing needs a recent sign-in. Enter the password for <strong>{user.email}</strong>; your{' '}
                  {reauthFor === 'reject' ? 'rejection' : 'approval'} is sent right after.
                </DialogDescription>
              </DialogHeader>
              <Field id="reauth-password" label="Password" error={reauthError}>
                <Input
                  id="reauth-password"
                  type="password"
                  autoComplete="current-password"
                  required
                  autoFocus
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                />
              </Field>
              <DialogFooter>
                <Button type="button" variant="outline" onClick={() => setReauthFor(null)}>
                  Cancel
                </Button>
                <Button type="submit" disabled={reauthBusy || !password}>
                  {reauthBusy ? 'Checking…' : 'Sign in and continue'}
                </Button>
              </DialogFooter>
            </form>
          )}
        </DialogContent>
      </Dialog>
    </div>
  );
}
