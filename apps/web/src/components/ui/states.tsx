import { InboxIcon, RotateCwIcon } from 'lucide-react';
import type { ReactNode } from 'react';
import { cn } from '../../lib/client/utils';
import { Alert } from './alert';
import { Button } from './button';
import { Skeleton } from './skeleton';

export function EmptyState({
  title,
  children,
  icon,
  action,
  className,
}: {
  title: string;
  children?: ReactNode;
  icon?: ReactNode;
  action?: ReactNode;
  className?: string;
}) {
  return (
    <div
      className={cn(
        'flex flex-col items-center justify-center gap-2 rounded-lg border border-dashed px-6 py-10 text-center',
        className,
      )}
    >
      <div className="text-muted-foreground [&_svg]:size-8" aria-hidden="true">
        {icon ?? <InboxIcon />}
      </div>
      <p className="font-medium">{title}</p>
      {children ? <div className="max-w-md text-sm text-muted-foreground">{children}</div> : null}
      {action ? <div className="mt-2">{action}</div> : null}
    </div>
  );
}

export function LoadingRows({ rows = 4, label = 'Loading' }: { rows?: number; label?: string }) {
  return (
    <div role="status" aria-live="polite" className="grid gap-2 py-2">
      <span className="sr-only">{label}…</span>
      {Array.from({ length: rows }, (_, i) => (
        <Skeleton key={i} className="h-9 w-full" />
      ))}
    </div>
  );
}

export function ErrorState({
  error,
  onRetry,
  title = 'Could not load this',
}: {
  error: unknown;
  onRetry?: () => void;
  title?: string;
}) {
  const message =
    error instanceof Error ? error.message : typeof error === 'string' ? error : 'Unexpected error';
  return (
    <Alert variant="destructive" title={title}>
      <div className="flex flex-wrap items-center gap-3">
        <span>{message}</span>
        {onRetry ? (
          <Button size="sm" variant="outline" onClick={onRetry}>
            <RotateCwIcon aria-hidden="true" /> Retry
          </Button>
        ) : null}
      </div>
    </Alert>
  );
}
