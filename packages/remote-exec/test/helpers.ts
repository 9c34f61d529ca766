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
