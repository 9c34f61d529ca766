/**
 * Safe text: the one encoding of output and results that crosses every boundary (engine → agent → control
 * plane → database → API, dashboard, CLI, exports). Browser-safe (no node imports).
 *
 * A target may print anything: NUL, invalid UTF-8, lone surrogates (Python str → JSON), ANSI escapes, carriage
 * returns that overwrite a terminal line. PostgreSQL refuses U+0000 in text and jsonb, lone surrogates break
 * JSON consumers, and escapes are a hazard on an operator's terminal. So the engine — the first trusted reader
 * of what the target wrote — turns bytes into *safe text*, losslessly:
 *
 * - a UTF-8 sequence of a safe code point stays as it is (so ordinary output, backslashes included, is unchanged);
 * - every other byte — part of invalid UTF-8, a control character other than TAB and LF (C0, DEL, C1; CR and ESC
 *   included), or a code point of the escape range itself — becomes one **escape**: the code point
 *   U+10FF00 + byte, from the last Supplementary Private Use plane (valid Unicode, valid in PostgreSQL and JSON).
 *
 * Decoding maps each escape back to its byte and everything else to its UTF-8 bytes, so `decodeToBytes(
 * encodeBytes(b))` equals `b` for every byte string. Renderers show escapes visibly (`\xNN` in plain text, a
 * marked badge in the dashboard), never as the control character they stand for.
 */
import { z } from 'zod';

export const ESCAPE_BASE = 0x10ff00;
const ESCAPE_HIGH = 0xdbff; // high surrogate of U+10FF00..U+10FFFF
const ESCAPE_LOW_BASE = 0xdf00; // low surrogate of U+10FF00

function safeCodePoint(cp: number): boolean {
  if (cp === 0x09 || cp === 0x0a) return true;
  if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) return false;
  if (cp >= 0xd800 && cp <= 0xdfff) return false;
  return cp < ESCAPE_BASE;
}

function escapeOf(byte: number): string {
  return String.fromCharCode(ESCAPE_HIGH, ESCAPE_LOW_BASE + byte);
}

/** Length of the well-formed UTF-8 sequence at `i` (1–4), or 0 when the bytes there are not one. */
function utf8SequenceAt(b: Uint8Array, i: number): { len: number; cp: number } | null {
  const b0 = b[i]!;
  if (b0 < 0x80) return { len: 1, cp: b0 };
  const cont = (k: number): number => {
    const x = b[i + k];
    return x !== undefined && (x & 0xc0) === 0x80 ? x & 0x3f : -1;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    const c1 = cont(1);
    return c1 < 0 ? null : { len: 2, cp: ((b0 & 0x1f) << 6) | c1 };
  }
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const c1 = cont(1);
    const c2 = cont(2);
    if (c1 < 0 || c2 < 0) return null;
    const cp = ((b0 & 0x0f) << 12) | (c1 << 6) | c2;
    // Overlong forms and UTF-16 surrogates are not well-formed UTF-8.
    if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) return null;
    return { len: 3, cp };
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const c1 = cont(1);
    const c2 = cont(2);
    const c3 = cont(3);
    if (c1 < 0 || c2 < 0 || c3 < 0) return null;
    const cp = ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3;
    if (cp < 0x10000 || cp > 0x10ffff) return null;
    return { len: 4, cp };
  }
  return null;
}

/** Bytes (anything a target wrote) → safe text. Lossless. */
export function encodeBytes(bytes: Uint8Array): string {
  const parts: string[] = [];
  let run = '';
  for (let i = 0; i < bytes.length;) {
    const seq = utf8SequenceAt(bytes, i);
    if (seq && safeCodePoint(seq.cp)) {
      run += String.fromCodePoint(seq.cp);
      i += seq.len;
    } else {
      const n = seq ? seq.len : 1;
      for (let k = 0; k < n; k++) run += escapeOf(bytes[i + k]!);
      i += n;
    }
    if (run.length >= 8192) {
      parts.push(run);
      run = '';
    }
  }
  parts.push(run);
  return parts.join('');
}

/** Characters that safe text never holds as themselves (escapes, U+10FF00..U+10FFFF, are what stands for them). */
const UNSAFE =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when `s` is already safe text (what every receiver checks). */
export function isSafeText(s: string): boolean {
  return !UNSAFE.test(s);
}

const encoder = new TextEncoder();

/** UTF-8 of `s`, with lone surrogates written as their 3-byte (WTF-8) form, which is not valid UTF-8. */
function wtf8(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
      out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
      i++;
    } else if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return Uint8Array.from(out);
}

/**
 * A JS string of unknown origin (a value parsed from JSON the target wrote) → safe text. Strings that are
 * already safe and hold no escape-range character come back unchanged (the common case costs one regex test).
 */
export function encodeString(s: string): string {
  if (isSafeText(s) && !s.includes('\udbff')) return s;
  return encodeBytes(wtf8(s));
}

/** Safe text → the exact bytes it stands for. */
export function decodeToBytes(safe: string): Uint8Array {
  const chunks: Uint8Array[] = [];
  let run = '';
  const flush = (): void => {
    if (run) chunks.push(encoder.encode(run));
    run = '';
  };
  for (let i = 0; i < safe.length; i++) {
    const c = safe.charCodeAt(i);
    const low = safe.charCodeAt(i + 1);
    if (c === ESCAPE_HIGH && low >= ESCAPE_LOW_BASE && low <= 0xdfff) {
      flush();
      chunks.push(Uint8Array.of(low - ESCAPE_LOW_BASE));
      i++;
    } else run += safe[i];
  }
  flush();
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Every string of a JSON value (keys included) as safe text. */
export function encodeJsonStrings<T>(value: T): T {
  if (typeof value === 'string') return encodeString(value) as T;
  if (Array.isArray(value)) return value.map((v) => encodeJsonStrings(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[encodeString(k)] = encodeJsonStrings(v);
    return out as T;
  }
  return value;
}

/** One piece of safe text as a renderer sees it: ordinary text, or one raw byte to show as a marked escape. */
export type TextSegment = { text: string } | { byte: number };

/** Bidirectional-override controls: valid text, but they reorder what is displayed (Trojan Source). */
const BIDI = /[\u202a-\u202e\u2066-\u2069]/g;

/** Safe text split for renderers; bidi controls become their own visible `{ text: '<U+202E>' }`-style marks. */
export function segments(safe: string): TextSegment[] {
  const out: TextSegment[] = [];
  let run = '';
  for (let i = 0; i < safe.length; i++) {
    const c = safe.charCodeAt(i);
    const low = safe.charCodeAt(i + 1);
    if (c === ESCAPE_HIGH && low >= ESCAPE_LOW_BASE && low <= 0xdfff) {
      if (run) out.push({ text: run });
      run = '';
      out.push({ byte: low - ESCAPE_LOW_BASE });
      i++;
    } else run += safe[i];
  }
  if (run) out.push({ text: run });
  return out;
}

/** Plain-text rendering for terminals, logs and CSV: escapes as `\xNN`, bidi controls as `<U+XXXX>`. */
export function displayText(safe: string): string {
  let s = '';
  for (const seg of segments(safe)) {
    s += 'byte' in seg ? `\\x${seg.byte.toString(16).padStart(2, '0')}` : seg.text;
  }
  return s.replace(BIDI, (ch) => `<U+${ch.charCodeAt(0).toString(16).toUpperCase()}>`);
}

/** Receivers parse output and result strings with this: anything else is a malformed report, refused for good. */
export const SafeText = z.string().refine(isSafeText, {
  message: 'text must be safe text (no NUL, control characters or lone surrogates; see protocol/text.ts)',
});
