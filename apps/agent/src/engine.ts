/**
 * The engine seam. Production uses @pyreach/remote-exec; unit tests of the job pipeline substitute a scripted
 * engine (the integration tests always use the real one against real CPython targets).
 */
import type { ExecResult } from '@pyreach/protocol/exec';
import type { PythonProcess } from '@pyreach/protocol/inventory';
import { discover, runInTarget, type RunOptions } from '@pyreach/remote-exec';

export interface Engine {
  discover(opts?: { pids?: number[] }): Promise<PythonProcess[]>;
  runInTarget(opts: RunOptions): Promise<ExecResult>;
}

export const realEngine: Engine = {
  discover: (opts) => discover(opts ?? {}),
  runInTarget: (opts) => runInTarget(opts),
};

export type { RunOptions };
