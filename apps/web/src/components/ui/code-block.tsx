import type { ReactNode } from 'react';
import { segments } from '@pyreach/protocol/text';
import { cn } from '../../lib/client/utils';

/** Bidirectional-override controls: valid text, but they reorder what is displayed (Trojan Source). */
const BIDI = /([\u202a-\u202e\u2066-\u2069])/;

/**
 * Safe text (protocol text.ts) as React nodes: each escape (a byte that was NUL, a control character, ESC,
 * invalid UTF-8 …) is a visible badge `\xNN`, a bidi control a visible `<U+XXXX>` badge; never the raw
 * character, so nothing a target printed can clear, recolour or reorder what an operator reads.
 */
export function SafeTextView({ text }: { text: string }): ReactNode {
  const badge = (key: string, label: string, title: string) => (
    <span
      key={key}
      data-testid="text-escape"
      title={title}
      className="mx-px rounded-sm bg-warning/25 px-0.5 text-[0.9em] text-warning ring-1 ring-warning/40"
    >
      {label}
    </span>
  );
  return segments(text).map((seg, i) => {
    if ('byte' in seg) {
      const hex = seg.byte.toString(16).padStart(2, '0');
      return badge(`b${i}`, `\\x${hex}`, `byte 0x${hex} (not printable as text)`);
    }
    return seg.text
      .split(BIDI)
      .map((part, j) =>
        BIDI.test(part) && part.length === 1
          ? badge(
              `t${i}-${j}`,
              `<U+${part.charCodeAt(0).toString(16).toUpperCase()}>`,
              'bidirectional control character',
            )
          : part,
      );
  });
}

/**
 * Monospace text. Content is always rendered as React text nodes — never as HTML — because it may come from
 * a target process or from another user; escapes of safe text are shown as visible badges (SafeTextView).
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
        <SafeTextView text={children} />
      </pre>
    </div>
  );
}
