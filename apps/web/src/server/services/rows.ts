/**
 * The database's JSON columns, parsed with their protocol schema on read: a row that does not match is an
 * INTERNAL error naming the column, never a cast that lets a wrong shape travel on. Also the typed reading of the
 * state columns the CHECK constraints keep to the state table.
 */
import { z } from 'zod';
import { NamespaceLabels, ReviewDecision, Rollout, Role, Targets } from '@pyreach/protocol/api';
import { ExecError, ThreadInfo } from '@pyreach/protocol/exec';
import { JsonObject, Labels } from '@pyreach/protocol/common';
import { ContainerIdentity, ProcessThread } from '@pyreach/protocol/inventory';
import { JobOptions } from '@pyreach/protocol/options';
import { AfterReviewState, ExecutionState, RequestState } from '@pyreach/protocol/states';
import { AppError } from './errors';

function column<S extends z.ZodType>(schema: S, what: string) {
  return (value: unknown): z.infer<S> => {
    const r = schema.safeParse(value);
    if (!r.success)
      throw new AppError(
        'INTERNAL',
        `stored ${what} does not match its schema: ${z.prettifyError(r.error)}`,
        {
          userMessage: 'internal error',
        },
      );
    return r.data;
  };
}

export const targetsOf = column(Targets, 'targets');
export const paramsOf = column(JsonObject, 'params');
export const rolloutOf = column(Rollout, 'rollout');
export const optionsOf = column(JobOptions, 'job options');
export const labelsOf = column(Labels, 'labels');
export const namespaceLabelsOf = column(NamespaceLabels, 'namespace labels');
export const cmdlineOf = column(z.array(z.string()), 'command line');
export const threadsOf = column(z.array(ProcessThread), 'threads');
export const containerIdentityOf = column(ContainerIdentity.nullable(), 'container identity');
export const rolesOf = column(z.array(Role), 'roles');
export const roleOf = column(Role, 'role');
export const executionStateOf = column(ExecutionState, 'execution state');
export const requestStateOf = column(RequestState, 'request state');
export const afterReviewOf = column(AfterReviewState.nullable(), 'after-review state');
export const execErrorOf = column(ExecError.nullable(), 'execution error');
export const decisionOf = column(ReviewDecision, 'review decision');
export const leftoverThreadOf = column(ThreadInfo.nullable(), 'leftover thread');

/** A request row with its JSON columns parsed (what the API returns and the services reason about). */
export function requestOf<
  R extends {
    params: unknown;
    targets: unknown;
    rollout: unknown;
    options: unknown;
    state: string;
    approverRoles: string[];
    afterReview?: string | null;
  },
>(row: R) {
  return {
    ...row,
    afterReview: afterReviewOf(row.afterReview ?? null),
    params: paramsOf(row.params),
    targets: targetsOf(row.targets),
    rollout: rolloutOf(row.rollout),
    options: optionsOf(row.options),
    state: requestStateOf(row.state),
    approverRoles: rolesOf(row.approverRoles),
  };
}
export type ParsedRequest<R extends Parameters<typeof requestOf>[0]> = ReturnType<typeof requestOf<R>>;
