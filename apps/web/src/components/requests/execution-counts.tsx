'use client';
import { ExecutionState, executionStateCounts } from '@pyreach/protocol/states';
import { ExecutionBadge } from '../status';

/**
 * Per-state counts of a request's executions ("3 succeeded · 1 failed"), in the state table's order, only the
 * states that occur. Computed from the executions the page shows, so live updates keep it in step.
 */
export function ExecutionCounts({ states }: { states: readonly ExecutionState[] }) {
  const counts = executionStateCounts(states);
  const present = ExecutionState.options.filter((s) => counts[s] > 0);
  if (present.length === 0) return null;
  return (
    <ul
      aria-label="Executions by state"
      data-testid="execution-counts"
      className="flex flex-wrap items-center gap-1.5 text-sm font-normal"
    >
      {present.map((s) => (
        <li key={s} data-state={s} className="inline-flex items-center gap-1">
          <span className="tabular-nums">{counts[s]}</span>
          <ExecutionBadge state={s} />
        </li>
      ))}
    </ul>
  );
}
