import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  SafeText,
  decodeToBytes,
  displayText,
  encodeBytes,
  encodeJsonStrings,
  encodeString,
  isSafeText,
  segments,
} from './text';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('safe text', () => {
  it('leaves ordinary output, backslashes, tabs, newlines and non-ASCII exactly as printed', () => {
    const s = 'order 42 failed: C:\\tmp\\x01 — größe 🐍\tok\n';
    assert.equal(encodeBytes(utf8(s)), s);
    assert.equal(encodeString(s), s);
    assert.ok(isSafeText(s));
  });

  it('turns NUL, ESC, CR, DEL, C1 controls and invalid UTF-8 into escapes that decode to the same bytes', () => {
    const raw = bytes(
      0x61,
      0x00,
      0x62,
      0x1b,
      0x5b,
      0x33,
      0x31,
      0x6d,
      0x0d,
      0x7f,
      0xc2,
      0x85,
      0xff,
      0xc3,
      0x28,
      0xed,
      0xa0,
      0x80,
    );
    const safe = encodeBytes(raw);
    assert.ok(isSafeText(safe));
    assert.ok(!safe.includes('\u0000') && !safe.includes('\u001b') && !safe.includes('\r'));
    assert.deepEqual(decodeToBytes(safe), raw);
    assert.equal(displayText(safe), 'a\\x00b\\x1b[31m\\x0d\\x7f\\xc2\\x85\\xff\\xc3(\\xed\\xa0\\x80');
  });

  it('round-trips any byte string losslessly', () => {
    for (let i = 0; i < 200; i++) {
      const raw = new Uint8Array(randomBytes(1 + (i % 97)));
      const safe = encodeBytes(raw);
      assert.ok(isSafeText(safe), `not safe for ${Buffer.from(raw).toString('hex')}`);
      assert.deepEqual(decodeToBytes(safe), raw);
    }
  });

  it('escapes a genuine escape-range code point in the input, so decoding never invents a byte', () => {
    const raw = utf8('x\u{10FF41}y');
    const safe = encodeBytes(raw);
    assert.deepEqual(decodeToBytes(safe), raw);
    assert.equal(displayText(safe), 'x\\xf4\\x8f\\xbd\\x81y');
    assert.equal(encodeString('x\u{10FF41}y'), safe);
  });

  it('encodes lone surrogates and NUL in strings parsed from JSON (what a Python result holds)', () => {
    const parsed = JSON.parse('{"k\\u0000": ["\\ud800", "ok", 1, null, {"x": "a\\u0000b"}]}');
    const safe = encodeJsonStrings(parsed);
    const text = JSON.stringify(safe);
    assert.ok(isSafeText(text));
    assert.equal(displayText(Object.keys(safe)[0]!), 'k\\x00');
    assert.equal(displayText(safe['k\u{10FF00}'][0]), '\\xed\\xa0\\x80');
    assert.equal(safe['k\u{10FF00}'][2], 1);
  });

  it('is refused by the receivers schema when a sender skipped the encoding', () => {
    assert.equal(SafeText.safeParse('a\u0000b').success, false);
    assert.equal(SafeText.safeParse('\ud800').success, false);
    assert.equal(SafeText.safeParse('\u001b[2J').success, false);
    assert.equal(SafeText.safeParse(encodeString('a\u0000b')).success, true);
  });

  it('shows bidi overrides visibly and splits escapes into their own segments for the dashboard', () => {
    const safe = encodeString('ok\u202Eevil\u0000');
    assert.equal(displayText(safe), 'ok<U+202E>evil\\x00');
    assert.deepEqual(segments(safe), [{ text: 'ok\u202Eevil' }, { byte: 0 }]);
  });
});
