import type { z } from 'zod';

export type RiskLevel = 'low' | 'medium' | 'high';

/**
 * One built-in script. The Python `source` reads its inputs from `params` (a dict the harness fills from
 * JSON data) and may assign `result`; parameters are never pasted into the source.
 */
export interface ScriptDefinition<P extends z.ZodType = z.ZodType> {
  /** Stable id, `area.verb` (e.g. `logging.set_level`); recorded on every request and job. */
  id: string;
  /** Bumped whenever the source or the parameter schema changes. */
  version: number;
  title: string;
  description: string;
  risk: RiskLevel;
  /** True when the script only reads state in the target. */
  readOnly: boolean;
  /** Run on the picked-up thread (needed for main-thread-only APIs) instead of a fresh thread. */
  inline?: boolean;
  params: P;
  source: string;
}
