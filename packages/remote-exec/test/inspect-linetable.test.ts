import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { lineForInstruction } from '../src/inspect/linetable';
import { pythonPath } from '../../../test/support/python';

// Every code object of a few large stdlib modules (nested functions, comprehensions, try/except, match,
// async code, very long functions), with CPython's own answer for the line of each instruction.
const DUMP = String.raw`
import json, sys, types, importlib
out = []
def walk(code):
    lines = [p[0] for p in code.co_positions()]
    out.append({"name": code.co_qualname, "first": code.co_firstlineno, "table": code.co_linetable.hex(), "lines": lines})
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            walk(c)
for name in ("argparse", "asyncio.base_events", "typing", "dataclasses", "pydoc", "email._header_value_parser", "inspect", "tarfile", "ast", "difflib", "pickle", "threading", "subprocess", "zipfile", "http.client", "logging", "unittest.case", "decimal", "_pydecimal", "enum", "functools", "collections", "tkinter"):
    try:
        m = importlib.import_module(name)
    except ImportError:
        continue
    src = open(m.__file__).read()
    walk(compile(src, m.__file__, "exec"))
json.dump(out, sys.stdout)
`;

interface Dumped {
  name: string;
  first: number;
  table: string;
  lines: (number | null)[];
}

describe('the co_linetable decoder', () => {
  it('gives the line CPython itself reports (co_positions) for every instruction of thousands of real code objects', () => {
    const codes = JSON.parse(
      execFileSync(pythonPath(), ['-I', '-c', DUMP], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }),
    ) as Dumped[];
    assert.ok(codes.length > 2000, `only ${codes.length} code objects`);
    let checked = 0;
    for (const c of codes) {
      const table = Buffer.from(c.table, 'hex');
      c.lines.forEach((expected, i) => {
        const r = lineForInstruction(table, c.first, i);
        assert.ok(r.ok, `${c.name} instruction ${i}: ${!r.ok && r.message}`);
        assert.equal(r.line, expected, `${c.name} instruction ${i}`);
        checked++;
      });
      const past = lineForInstruction(table, c.first, c.lines.length);
      assert.equal(past.ok, false, `${c.name}: an instruction past the end has no line`);
    }
    assert.ok(checked > 100_000, `only ${checked} instructions`);
  });

  it('answers "corrupt", never loops or reads past the end, for garbage tables', () => {
    const rnd = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
    const next = rnd(42);
    const started = performance.now();
    for (let n = 0; n < 20_000; n++) {
      const table = Uint8Array.from({ length: 1 + (n % 300) }, next);
      const r = lineForInstruction(table, 1, n % 700);
      if (r.ok) assert.ok(r.line === null || Number.isInteger(r.line));
    }
    assert.ok(performance.now() - started < 5000);
    assert.deepEqual(lineForInstruction(Uint8Array.of(0, 0, 0), 1, 0), {
      ok: false,
      reason: 'corrupt',
      message: 'location table is corrupt at byte 0: expected the start of an entry',
    });
    // A long-form entry whose varints run into the next entry.
    assert.equal(lineForInstruction(Uint8Array.of(0xf0, 0x42, 0x80), 1, 0).ok, false);
    // A varint of more than five 6-bit groups.
    assert.equal(
      lineForInstruction(Uint8Array.of(0xe8, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x01), 1, 0).ok,
      false,
    );
  });
});
