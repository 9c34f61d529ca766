/**
 * @pyreach/remote-exec — make a running CPython 3.14 process run a piece of Python and report back.
 * See README.md for how it works, what it writes where and the privileges it needs.
 */
export { discover, inspectProcess, type DiscoverOptions } from './discovery';
export {
  containerIdentityFor,
  matchCgroupPath,
  parseProcCgroup,
  readContainerIdentity,
  CgroupParseError,
  type CgroupIdentity,
  type ContainerRuntime,
} from './container';
export { runInTarget, DEFAULTS, type RunOptions, type Backend } from './run';
export { parseHarnessReport, resultFromReport, type HarnessReport } from './report';
export { findStagedRuns, type StagedRun } from './recover';
export { DEFAULT_LOCK_DIR } from './lock';
export { DEFAULT_BASE_DIRS } from './staging';
export type { ExecResult, EngineErrorCode } from '@pyreach/protocol/exec';
export type { PythonProcess } from '@pyreach/protocol/inventory';
export {
  readStacks,
  readTasks,
  readThreadStates,
  threadFacts,
  syscallName,
  INSPECT_DEFAULTS,
  type StacksOptions,
  type TasksOptions,
  type InspectOptions,
  type ThreadFact,
  type ThreadStateFact,
} from './inspect/index';
export type { StacksReport, TasksReport, StackThread, AsyncTask } from '@pyreach/protocol/inspect';
