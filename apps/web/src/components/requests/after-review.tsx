'use client';
import { useState } from 'react';
import type { RequestRow } from '@pyreach/protocol/api';
import { AFTER_REVIEW } from '@pyreach/protocol/states';
import { api, errorMessage } from '../../lib/client/api';
import { canDo, useUser } from '../../lib/client/session';
import { formatTime } from '../../lib/client/utils';
import { Alert } from '../ui/alert';
import { Button } from '../ui/button';
import { Textarea } from '../ui/input';
import { Field } from '../ui/label';

/**
 * A break-glass request's review afterwards: who closed it and what they said, or — for an approver or admin who
 * is not its requester — the form that closes it (the server checks both again).
 */
export function AfterReview({
  request,
  onDone,
}: {
  request: Pick<
    RequestRow,
    'id' | 'requesterId' | 'afterReview' | 'afterReviewAt' | 'afterReviewComment' | 'emergencyReason'
  >;
  onDone: () => void;
}) {
  const user = useUser();
  const [comment, setComment] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  if (!request.afterReview) return null;
  if (request.afterReview === 'closed')
    return (
      <Alert variant="success" title={AFTER_REVIEW.closed.label} data-testid="after-review">
        {request.afterReviewAt ? `${formatTime(request.afterReviewAt)}: ` : ''}
        {request.afterReviewComment}
      </Alert>
    );
  const mayClose = canDo(user.role, 'request:review') && request.requesterId !== user.id;
  async function close() {
    setBusy(true);
    setError(null);
    try {
      await api('closeAfterReview', { params: { id: request.id }, body: { comment: comment.trim() } });
      setComment('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div className="grid gap-2" data-testid="after-review">
      <Alert variant="warning" title="Break-glass: ran without approval, needs review afterwards">
        {request.emergencyReason}
      </Alert>
      {mayClose ? (
        <>
          <Field id={`ar-${request.id}`} label="What you checked">
            <Textarea
              id={`ar-${request.id}`}
              value={comment}
              onChange={(e) => setComment(e.target.value)}
              placeholder="The output, why it was needed, anything to follow up"
            />
          </Field>
          {error ? <Alert variant="destructive" title={errorMessage(error)} /> : null}
          <Button type="button" onClick={() => void close()} disabled={busy || comment.trim().length < 3}>
            Close review afterwards
          </Button>
        </>
      ) : (
        <p className="text-sm text-muted-foreground">
          {request.requesterId === user.id
            ? 'A second person (an approver or admin) reviews it.'
            : 'An approver or admin reviews it.'}
        </p>
      )}
    </div>
  );
}
