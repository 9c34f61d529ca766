import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProcMem } from '../src/memory';
import { InspectFault, TargetMemory, imageKey, readableRegions } from '../src/inspect/memory';
import { readMaps } from '../src/procfs';

// This very process's memory (/proc/self/mem) stands in for a target: the bounds are the reader's, not
// the target's.
function self(
  limits: { maxBytes?: number; deadline?: number; maxReadLen?: number },
  images = new Set<string>(),
) {
  const mem = ProcMem.open('/proc/self/mem', false);
  const tm = new TargetMemory(mem, () => readableRegions(readMaps('/proc', process.pid), images), {
    maxBytes: limits.maxBytes ?? 1 << 20,
    deadline: limits.deadline ?? performance.now() + 60_000,
    maxReadLen: limits.maxReadLen,
  });
  return { tm, close: () => mem.close() };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof InspectFault, String(e));
    return e.code;
  }
  return 'none';
}

const maps = readMaps('/proc', process.pid);
const anon = maps.find(
  (m) => m.path === '[heap]' || (m.path === '' && m.inode === '0' && m.perms[0] === 'r'),
)!;
const nodeImage = maps.find(
  (m) => m.path === process.execPath && m.perms.startsWith('r') && m.offset === 0n,
)!;

describe('bounded reads of target memory', () => {
  it('reads anonymous memory, and refuses a file mapping that is not one of the allowed images', () => {
    const { tm, close } = self({});
    try {
      assert.equal(tm.read(anon.start, 8).length, 8);
      assert.equal(
        code(() => tm.read(nodeImage.start, 4)),
        'OUT_OF_BOUNDS',
      );
    } finally {
      close();
    }
    const allowed = self({}, new Set([imageKey(nodeImage)]));
    try {
      assert.deepEqual([...allowed.tm.read(nodeImage.start, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    } finally {
      allowed.close();
    }
  });

  it('refuses a read that would cross out of an allowed region', () => {
    const { tm, close } = self({});
    try {
      const regions = readableRegions(maps, new Set());
      const r = regions.find((x) => !regions.some((y) => y.start === x.end))!;
      assert.equal(
        code(() => tm.read(r.end - 4n, 8)),
        'OUT_OF_BOUNDS',
      );
      assert.equal(tm.readClipped(r.end - 4n, 64).length, 4);
    } finally {
      close();
    }
  });

  it('stops at the byte budget, the per-read limit, the deadline and impossible addresses', () => {
    const budget = self({ maxBytes: 16 });
    try {
      budget.tm.read(anon.start, 8);
      budget.tm.read(anon.start, 8);
      assert.equal(
        code(() => budget.tm.read(anon.start, 1)),
        'BUDGET_EXCEEDED',
      );
      assert.equal(budget.tm.bytesRead, 16);
    } finally {
      budget.close();
    }
    const big = self({ maxReadLen: 4096 });
    try {
      assert.equal(
        code(() => big.tm.read(anon.start, 4097)),
        'CORRUPT',
      );
      assert.equal(
        code(() => big.tm.read(0n, 8)),
        'READ_FAULT',
      );
      assert.equal(
        code(() => big.tm.read(1n << 60n, 8)),
        'READ_FAULT',
      );
      assert.equal(
        code(() => big.tm.read(anon.start, -1)),
        'CORRUPT',
      );
    } finally {
      big.close();
    }
    const late = self({ deadline: performance.now() - 1 });
    try {
      assert.equal(
        code(() => late.tm.read(anon.start, 8)),
        'DEADLINE_EXCEEDED',
      );
    } finally {
      late.close();
    }
  });
});
