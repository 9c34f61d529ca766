/**
 * @pyreach/remote-exec — make a running CPython 3.14 process run a piece of Python and report back.
 * See README.md for how it works, what it writes where and the privileges it needs.
 */
export { discover, inspectProcess, type DiscoverOptions } from './discovery';
export { runInTarget, DEFAULTS, type RunOptions, type Backend } from './run';
export { parseHarnessReport, resultFromReport, type HarnessReport } from './report';
export { findStagedRuns, type StagedRun } from './recover';
export { DEFAULT_LOCK_DIR } from './lock';
export { DEFAULT_BASE_DIRS } from './staging';
export type { ExecResult, EngineErrorCode } from '@pyreach/protocol/exec';
export type { PythonProcess } from '@pyreach/protocol/inventory';
