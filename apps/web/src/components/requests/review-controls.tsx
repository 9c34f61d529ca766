'use client';
import { useState, type FormEvent } from 'react';
import { CheckIcon, KeyRoundIcon, XIcon } from 'lucide-react';
import { api, errorMessage, isApiError } from '../../lib/client/api';
import { useUser } from '../../lib/client/session';
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
 * Approve / reject with a comment. When the server answers STALE_AUTH (the sign-in is older than the
 * re-authentication window) it asks for the password, signs in again and repeats the vote.
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

  async function vote(decision: Decision) {
    if (decision === 'reject' && !comment.trim()) {
      setCommentError('Say why you reject it: the requester sees this comment.');
      return;
    }
    setCommentError(null);
    setBusy(decision);
    setError(null);
    try {
      await api('reviewRequest', {
        params: { id: request.id },
        body: { decision, ...(comment.trim() ? { comment: comment.trim() } : {}) },
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
        </DialogContent>
      </Dialog>
    </div>
  );
}
