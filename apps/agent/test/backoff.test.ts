import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from '../src/backoff';

test('the window doubles per attempt up to the ceiling and resets after a success', () => {
  const b = new Backoff({ minMs: 500, maxMs: 8000, random: () => 0.999999 });
  const delays = Array.from({ length: 7 }, () => b.next());
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
  b.reset();
  assert.equal(b.next(), 500);
});

test('delays are fully jittered: the same attempt spans its whole window', () => {
  const lo = new Backoff({ minMs: 500, maxMs: 30_000, random: () => 0 });
  const hi = new Backoff({ minMs: 500, maxMs: 30_000, random: () => 0.999999 });
  for (let i = 0; i < 6; i++) {
    lo.next();
    hi.next();
  }
  // 7th attempt: window [250, 30000]
  assert.equal(lo.next(), 250);
  assert.equal(hi.next(), 30_000);
});

test('a fleet reconnecting after a control-plane restart does not come back in the same second', () => {
  // 1000 agents, each on its 5th attempt (window 250 ms .. 8 s), with the real random source.
  const delays = Array.from({ length: 1000 }, () => {
    const b = new Backoff({ minMs: 500, maxMs: 30_000 });
    for (let i = 0; i < 4; i++) b.next();
    return b.next();
  });
  const perSecond = new Map<number, number>();
  for (const d of delays) perSecond.set(Math.floor(d / 1000), (perSecond.get(Math.floor(d / 1000)) ?? 0) + 1);
  const busiest = Math.max(...perSecond.values());
  assert.ok(perSecond.size >= 8, `delays spread over ${perSecond.size} seconds`);
  assert.ok(busiest < 250, `at most ${busiest} of 1000 agents in the busiest second`);
  assert.ok(Math.min(...delays) >= 250 && Math.max(...delays) <= 8000);
  assert.ok(new Set(delays).size > 500, 'delays differ between agents');
});
