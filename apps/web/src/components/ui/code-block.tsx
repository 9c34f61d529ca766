import type { ReactNode } from 'react';
import { cn } from '../../lib/client/utils';

/**
 * Monospace text. Content is always rendered as a React text node — never as HTML — because it may come from
 * a target process or from another user.
 */
export function CodeBlock({
  children,
  className,
  label,
  live = false,
  maxHeight = 'max-h-96',
  testId,
}: {
  children: string;
  className?: string;
  label?: ReactNode;
  live?: boolean;
  maxHeight?: string;
  testId?: string;
}) {
  return (
    <div className="grid gap-1">
      {label ? <div className="text-xs font-medium text-muted-foreground">{label}</div> : null}
      <pre
        data-testid={testId}
        tabIndex={0}
        aria-live={live ? 'polite' : undefined}
        aria-atomic={live ? 'false' : undefined}
        className={cn(
          'overflow-auto rounded-md border bg-muted/60 p-3 font-mono text-xs leading-relaxed whitespace-pre-wrap break-words focus-visible:outline-2 focus-visible:outline-ring',
          maxHeight,
          className,
        )}
      >
        {children}
      </pre>
    </div>
  );
}
