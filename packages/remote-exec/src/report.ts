/**
 * The harness's report (result.json in the staging directory) and what it means as an ExecResult. One
 * interpretation for every reader: the engine at the end of a run, and the agent when it recovers the
 * outcome of a run that was in progress when it restarted.
 */
import type { Json } from '@pyreach/protocol/common';
import type { ExecResult } from '@pyreach/protocol/exec';

export interface HarnessReport {
  status: 'succeeded' | 'failed' | 'harness_error';
  result?: Json;
  error?: { type: string; message: string; traceback?: string };
  pickedUpAt?: string;
  finishedAt?: string;
  thread?: { tid: number; name: string | null };
  outputTruncated?: boolean;
  budgetExceeded?: boolean;
  cancelled?: boolean;
}

/** Parses result.json; throws with the parser's message when it is not a report. */
export function parseHarnessReport(raw: Buffer | string): HarnessReport {
  const value = JSON.parse(
    typeof raw === 'string' ? raw : raw.toString('utf8'),
  ) as Partial<HarnessReport> | null;
  if (
    !value ||
    typeof value !== 'object' ||
    !['succeeded', 'failed', 'harness_error'].includes(value.status as string)
  ) {
    throw new Error('result.json is not a harness report (no valid status)');
  }
  return value as HarnessReport;
}

/**
 * `succeeded` only when the harness said so; otherwise `failed` with the specific code: HARNESS_ERROR (the
 * harness itself failed), TIME_BUDGET_EXCEEDED (stopped by the budget or a cancel), USER_EXCEPTION.
 */
export function resultFromReport(
  report: HarnessReport,
  output: string,
  opts: { budgetMs?: number; outputTruncated?: boolean } = {},
): ExecResult {
  const base: ExecResult = {
    status: 'failed',
    output,
    outputTruncated: !!report.outputTruncated || !!opts.outputTruncated,
    pickedUpAt: report.pickedUpAt ?? null,
    finishedAt: report.finishedAt ?? null,
    thread: report.thread ? { tid: report.thread.tid, name: report.thread.name ?? null } : null,
  };
  if (report.status === 'succeeded') {
    const r: ExecResult = { ...base, status: 'succeeded' };
    if (report.result !== undefined) r.result = report.result;
    return r;
  }
  const failed = (errorCode: ExecResult['errorCode'], message: string): ExecResult => {
    const r: ExecResult = { ...base, errorCode, message: message.slice(0, 4096) };
    if (report.error) r.error = report.error;
    return r;
  };
  if (report.status === 'harness_error')
    return failed(
      'HARNESS_ERROR',
      `the harness failed inside the target: ${report.error?.message ?? 'unknown'}`,
    );
  if (report.cancelled)
    return failed('TIME_BUDGET_EXCEEDED', 'the run was cancelled and stopped inside the target');
  if (report.budgetExceeded) {
    const budget = opts.budgetMs === undefined ? 'its time budget' : `its time budget of ${opts.budgetMs} ms`;
    return failed(
      'TIME_BUDGET_EXCEEDED',
      `the code exceeded ${budget} and was stopped; the target keeps running`,
    );
  }
  return failed('USER_EXCEPTION', `${report.error?.type ?? 'Exception'}: ${report.error?.message ?? ''}`);
}
