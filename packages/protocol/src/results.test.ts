import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  OUTPUT_PREVIEW_BYTES,
  describeGroup,
  firstLine,
  groupIdenticalOutcomes,
  previewOf,
  retryable,
  splitAtCut,
  type OutcomeOf,
} from './results';
import { EXECUTION, type ExecutionState } from './states';

const ended = (s: ExecutionState) => EXECUTION[s].terminal;
let n = 0;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
/** An execution as the detail carries it: the output's preview and the digest of the whole of it. */
const ex = (state: ExecutionState, output: string, result: unknown = null, errorCode: string | null = null) =>
  ({
    id: `e${++n}`,
    state,
    errorCode,
    output: previewOf(output).text,
    outputDigest: sha256(output),
    result,
  }) satisfies OutcomeOf;

describe('identical outcomes grouped', () => {
  it('groups byte-identical outputs with the same state and result, largest group first', () => {
    const same = "logger 'main': ERROR -> DEBUG\n";
    const xs = [
      ex('failed', 'boom\n', null, 'USER_EXCEPTION'),
      ...Array.from({ length: 37 }, () => ex('succeeded', same, { changed: 1 })),
      ex('succeeded', same, { changed: 1 }),
    ];
    const g = groupIdenticalOutcomes(xs, ended);
    assert.equal(g.length, 2);
    assert.equal(g[0]!.members.length, 38);
    assert.equal(describeGroup(g[0]!), "38 targets: logger 'main': ERROR -> DEBUG");
    assert.equal(describeGroup(g[1]!), '1 target: boom');
    assert.deepEqual(
      g[0]!.members.map((m) => m.id),
      xs.slice(1).map((m) => m.id),
      'members keep their order',
    );
  });

  it('normalises nothing: whitespace, line ends, key order, state and error code all separate', () => {
    const xs = [
      ex('succeeded', 'a\n'),
      ex('succeeded', 'a \n'),
      ex('succeeded', 'a\r\n'),
      ex('succeeded', 'a'),
      ex('failed', 'a\n', null, 'USER_EXCEPTION'),
      ex('failed', 'a\n', null, 'TIME_BUDGET_EXCEEDED'),
      ex('succeeded', 'a\n', { a: 1, b: 2 }),
      ex('succeeded', 'a\n', { b: 2, a: 1 }),
    ];
    assert.equal(groupIdenticalOutcomes(xs, ended).length, xs.length);
  });

  it('outputs alike in their preview but not after it are two outcomes; alike to the end, one', () => {
    const head = 'x'.repeat(OUTPUT_PREVIEW_BYTES);
    const xs = [
      ex('succeeded', `${head}tail A\n`),
      ex('succeeded', `${head}tail B\n`),
      ex('succeeded', `${head}tail A\n`),
    ];
    assert.equal(xs[0]!.output, xs[1]!.output, 'the previews are the same');
    const g = groupIdenticalOutcomes(xs, ended);
    assert.deepEqual(
      g.map((x) => x.members.map((m) => m.id)),
      [[xs[0]!.id, xs[2]!.id], [xs[1]!.id]],
    );
    assert.equal(g[0]!.outputDigest, sha256(`${head}tail A\n`));
  });

  it('leaves running executions out', () => {
    assert.deepEqual(groupIdenticalOutcomes([ex('picked_up', 'x'), ex('sent', '')], ended), []);
  });
});

describe('results helpers', () => {
  it('previewOf: at most the cap in UTF-8 bytes, cut on a code point, never inside an escape', () => {
    assert.deepEqual(previewOf('short'), { text: 'short', cut: false });
    assert.deepEqual(previewOf('a'.repeat(4096)), { text: 'a'.repeat(4096), cut: false });
    assert.deepEqual(previewOf('a'.repeat(4097)), { text: 'a'.repeat(4096), cut: true });
    // é is 2 bytes: 5 bytes of room keep 2 of them, not half of the third.
    assert.deepEqual(previewOf('ééé', 5), { text: 'éé', cut: true });
    // A safe-text escape (U+10FF00 + byte) is a surrogate pair, 4 bytes: kept whole or not at all.
    const esc = String.fromCodePoint(0x10ff1b);
    assert.deepEqual(previewOf(`ab${esc}`, 5), { text: 'ab', cut: true });
    assert.deepEqual(previewOf(`ab${esc}`, 6), { text: `ab${esc}`, cut: false });
    const big = previewOf('€'.repeat(5000));
    assert.ok(Buffer.byteLength(big.text) <= OUTPUT_PREVIEW_BYTES && big.cut);
    assert.equal(Buffer.byteLength(big.text), 4095, '€ is 3 bytes: 1365 of them');
  });

  it("firstLine: the first line that is not blank; '' without one", () => {
    assert.equal(firstLine('\n  \nhello\r\nworld'), 'hello');
    assert.equal(firstLine(''), '');
    assert.equal(
      describeGroup({ members: [1, 2], output: '', state: 'succeeded' }),
      '2 targets: (no output, succeeded)',
    );
  });

  it('retryable: failed, timed out, refused, lost, expired; never succeeded, cancelled, gone or running', () => {
    const states: ExecutionState[] = [
      'succeeded',
      'failed',
      'pickup_timeout',
      'target_gone',
      'refused',
      'agent_lost',
      'expired',
      'cancelled',
      'picked_up',
      'queued',
    ];
    assert.deepEqual(
      retryable(states.map((s) => ex(s, ''))).map((e) => e.state),
      ['failed', 'pickup_timeout', 'refused', 'agent_lost', 'expired'],
    );
  });
});

describe('the cut marked in place', () => {
  it('takes the markers off the end only, and only for a counted cut', () => {
    const forged = 'a\n[pyreach: output truncated at 10 bytes]\nb';
    assert.deepEqual(splitAtCut(forged + '\n[pyreach: output truncated at 1048576 bytes]\n', 42), {
      kept: forged,
      cut: 42,
    });
    const end = 'x\n[pyreach: output truncated at 5 bytes]\n';
    assert.deepEqual(splitAtCut(end, null), { kept: end, cut: null }, 'uncounted: shown as it is');
    assert.deepEqual(
      splitAtCut(
        'x\n[pyreach: output truncated at 5 bytes]\n\n[pyreach: output truncated by the control plane]\n',
        7,
      ),
      { kept: 'x', cut: 7 },
    );
  });
});
