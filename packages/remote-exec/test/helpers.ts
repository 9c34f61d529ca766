import { readdirSync } from 'node:fs';
import { DEFAULT_BASE_DIRS } from '../src/staging';

export const BACKENDS = ['native', 'sys'] as const;

/** Staging directories the engine left in the target's root (should always be none after a run). */
export function leftovers(pid: number, rootOnHost = '/'): string[] {
  const out: string[] = [];
  for (const base of DEFAULT_BASE_DIRS) {
    for (const root of [`/proc/${pid}/root`, rootOnHost === '/' ? '' : rootOnHost]) {
      try {
        for (const n of readdirSync(root + base)) if (/^pyreach-[0-9a-f]{16}$/.test(n)) out.push(`${root}${base}/${n}`);
      } catch {
        /* base absent */
      }
    }
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
