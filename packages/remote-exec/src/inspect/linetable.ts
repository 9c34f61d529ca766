/**
 * The location table of CPython 3.11+ code objects (`co_linetable`, PEP 626 lines with PEP 657 columns), as
 * CPython's InternalDocs/code_objects.md describes it: a sequence of entries, each covering 1–8 code units.
 * The first byte of an entry has its top bit set; bits 3–6 are the entry's code, bits 0–2 its length - 1.
 *
 *   code 15        no location (the instructions have no line)
 *   code 14        long form: signed varint line delta, then end-line delta, column + 1, end column + 1
 *   code 13        no columns: signed varint line delta
 *   codes 10–12    one-line form: line delta = code - 10, then start and end column bytes
 *   codes 0–9      short form: same line, one byte of column information
 *
 * Varints are little-endian groups of 6 bits; bit 6 of a byte says another follows. A signed varint keeps its
 * sign in the lowest bit. The line starts at `co_firstlineno`; "no location" leaves it unchanged.
 *
 * The table is target memory: every byte is checked to be where the format says, the position never runs
 * past the end, and varints are at most 5 groups, so a garbage table gives `corrupt`, never a hang.
 */

export type LineLookup =
  { ok: true; line: number | null } | { ok: false; reason: 'not_covered' | 'corrupt'; message: string };

export function lineForInstruction(table: Uint8Array, firstLine: number, addrq: number): LineLookup {
  if (!Number.isInteger(addrq) || addrq < 0)
    return { ok: false, reason: 'not_covered', message: `instruction index ${addrq} is negative` };
  let pos = 0;
  let addr = 0;
  let line = firstLine;
  const bad = (what: string): LineLookup => ({
    ok: false,
    reason: 'corrupt',
    message: `location table is corrupt at byte ${pos}: ${what}`,
  });
  const varint = (): number | null => {
    let value = 0;
    let shift = 0;
    for (let groups = 0; groups < 5; groups++) {
      if (pos >= table.length) return null;
      const b = table[pos++]!;
      if (b & 0x80) return null; // the next entry started inside a varint
      value |= (b & 63) << shift;
      if (!(b & 64)) return value >>> 0;
      shift += 6;
    }
    return null;
  };
  const signed = (): number | null => {
    const v = varint();
    if (v === null) return null;
    return v & 1 ? -(v >>> 1) : v >>> 1;
  };
  const skip = (n: number): boolean => {
    for (let i = 0; i < n; i++) {
      if (pos >= table.length || table[pos]! & 0x80) return false;
      pos++;
    }
    return true;
  };
  while (pos < table.length) {
    if (!(table[pos]! & 0x80)) return bad('expected the start of an entry');
    const first = table[pos++]!;
    const code = (first >> 3) & 15;
    const length = (first & 7) + 1;
    let entryLine: number | null;
    if (code === 15) entryLine = null;
    else if (code === 14 || code === 13) {
      const delta = signed();
      if (delta === null) return bad('truncated line delta');
      line += delta;
      entryLine = line;
      if (code === 14) {
        for (let k = 0; k < 3; k++) if (varint() === null) return bad('truncated long-form entry');
      }
    } else if (code >= 10) {
      line += code - 10;
      entryLine = line;
      if (!skip(2)) return bad('truncated one-line entry');
    } else {
      entryLine = line;
      if (!skip(1)) return bad('truncated short entry');
    }
    if (addrq < addr + length) return { ok: true, line: entryLine };
    addr += length;
  }
  return {
    ok: false,
    reason: 'not_covered',
    message: `instruction ${addrq} lies past the location table (${addr} code units)`,
  };
}
