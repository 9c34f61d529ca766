import { readdirSync, statSync } from 'node:fs';
import { DEFAULT_BASE_DIRS } from '../src/staging';

export const BACKENDS = ['native', 'sys'] as const;

/** When this test process started: staging directories older than that belong to someone else's earlier run. */
const STARTED_AT = Date.now() - 1000;

function createdByThisRun(path: string): boolean {
  try {
    return statSync(path).mtimeMs >= STARTED_AT;
  } catch {
    return false; // removed while we looked
  }
}

/**
 * Staging directories the engine left in the target's root during this test run (should always be none after
 * a run). Older ones — a crashed earlier run, another tool on the machine — are not this run's to judge.
 */
export function leftovers(pid: number, rootOnHost = '/'): string[] {
  const out: string[] = [];
  for (const base of DEFAULT_BASE_DIRS) {
    for (const root of [`/proc/${pid}/root`, rootOnHost === '/' ? '' : rootOnHost]) {
      try {
        for (const n of readdirSync(root + base))
          if (/^pyreach-[0-9a-f]{16}$/.test(n) && createdByThisRun(`${root}${base}/${n}`))
            out.push(`${root}${base}/${n}`);
      } catch {
        /* base absent */
      }
    }
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * `leftovers()` once other processes' runs have had time to finish: the tests of other workspaces may be
 * staging in the same /tmp right now (their directories look like ours); a directory of ours never goes away,
 * theirs do. Resolves at once when there is none.
 */
export async function settledLeftovers(pid: number, rootOnHost = '/', waitMs = 30_000): Promise<string[]> {
  let found = leftovers(pid, rootOnHost);
  const until = Date.now() + waitMs;
  while (found.length > 0 && Date.now() < until) {
    await sleep(250);
    const now = new Set(leftovers(pid, rootOnHost));
    found = found.filter((p) => now.has(p));
  }
  return found;
}
