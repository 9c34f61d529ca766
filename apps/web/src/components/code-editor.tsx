'use client';
/** CodeMirror 6 with Python highlighting; `readOnly` shows library sources with the same look. */
import { useEffect, useRef } from 'react';
import { EditorState } from '@codemirror/state';
import { EditorView, keymap } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { indentWithTab } from '@codemirror/commands';
import { python } from '@codemirror/lang-python';
import { HighlightStyle, syntaxHighlighting } from '@codemirror/language';
import { tags as t } from '@lezer/highlight';

// Colours that read well on both themes (CSS variables would not reach the highlighter's classes).
const highlight = HighlightStyle.define([
  { tag: t.keyword, color: 'oklch(0.55 0.2 300)' },
  { tag: [t.string, t.special(t.string)], color: 'oklch(0.58 0.14 150)' },
  { tag: [t.number, t.bool, t.null], color: 'oklch(0.62 0.15 50)' },
  { tag: t.comment, color: 'oklch(0.6 0.02 260)', fontStyle: 'italic' },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], color: 'oklch(0.58 0.15 250)' },
  { tag: [t.className, t.definition(t.typeName)], color: 'oklch(0.62 0.14 80)' },
  { tag: t.operator, color: 'oklch(0.6 0.1 200)' },
]);

export function CodeEditor({
  value,
  onChange,
  readOnly = false,
  label,
  minHeight = '14rem',
  maxHeight = '28rem',
  testId,
}: {
  value: string;
  onChange?: (v: string) => void;
  readOnly?: boolean;
  label: string;
  minHeight?: string;
  maxHeight?: string;
  testId?: string;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const changeRef = useRef(onChange);
  changeRef.current = onChange;

  useEffect(() => {
    if (!host.current) return;
    const v = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: value,
        extensions: [
          basicSetup,
          python(),
          syntaxHighlighting(highlight),
          keymap.of([indentWithTab]),
          EditorState.readOnly.of(readOnly),
          EditorView.editable.of(!readOnly),
          EditorView.contentAttributes.of({
            'aria-label': label,
            ...(readOnly ? { 'aria-readonly': 'true' } : {}),
          }),
          EditorView.theme({
            '&': { minHeight, maxHeight },
            '.cm-scroller': { overflow: 'auto', fontFamily: 'var(--font-mono)' },
          }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) changeRef.current?.(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => {
      v.destroy();
      view.current = null;
    };
    // Created once per mount; later value changes are applied below.
  }, [readOnly]);

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value)
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
  }, [value]);

  return (
    <div
      ref={host}
      data-testid={testId}
      className="overflow-hidden rounded-md border focus-within:outline-2 focus-within:outline-offset-1 focus-within:outline-ring"
    />
  );
}
