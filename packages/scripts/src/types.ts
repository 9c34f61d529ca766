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
  /**
   * True when the script only reads state in the target: it changes nothing there and imports no module the
   * target had not loaded (beyond the harness's own few and modules compiled into the interpreter, such as
   * `gc`). Tested against a real target's `sys.modules`.
   */
  readOnly: boolean;
  /**
   * True when what the script returns may hold secrets or personal data (command lines, environment, paths,
   * cache contents). Policy: a run that needs no approval at all is only ever a library script that is both
   * read-only and not sensitive.
   */
  sensitive: boolean;
  /** How the change is undone: nothing to undo, undone by itself after a duration, or not undoable. */
  undo: 'nothing' | 'auto-restore' | 'irreversible';
  /** Run on the picked-up thread (needed for main-thread-only APIs) instead of a fresh thread. */
  inline?: boolean;
  params: P;
  source: string;
}
