/**
 * The harness's report (result.json in the staging directory) and what it means as an ExecResult. One
 * interpretation for every reader: the engine at the end of a run, and the agent when it recovers the
 * outcome of a run that was in progress when it restarted.
 */
import type { Json } from '@pyreach/protocol/common';
import type { ExecResult } from '@pyreach/protocol/exec';
import { encodeJsonStrings, encodeString } from '@pyreach/protocol/text';

export interface HarnessReport {
  status: 'succeeded' | 'failed' | 'harness_error';
  result?: Json;
  error?: { type: string; message: string; traceback?: string };
  pickedUpAt?: string;
  finishedAt?: string;
  thread?: { tid: number; name: string | null };
  outputTruncated?: boolean;
  /** Bytes printed after the output cap cut (never written to out.txt). */
  outputDroppedBytes?: number;
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

const text = (v: unknown, max: number): string => encodeString(String(v ?? '')).slice(0, max);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * `succeeded` only when the harness said so; `cancelled`/CANCELLED when a cancel stopped the code; otherwise
 * `failed` with the specific code: HARNESS_ERROR (the harness itself failed), TIME_BUDGET_EXCEEDED (stopped by
 * the budget), USER_EXCEPTION. Every string the target wrote comes back as safe text (`@pyreach/protocol/text`);
 * `output` must already be safe text (the engine encodes the bytes it read).
 */
export function resultFromReport(
  report: HarnessReport,
  output: string,
  opts: { budgetMs?: number; outputTruncated?: boolean } = {},
): ExecResult {
  const th = report.thread as { tid?: unknown; name?: unknown } | undefined;
  const base: ExecResult = {
    status: 'failed',
    output,
    outputTruncated: !!report.outputTruncated || !!opts.outputTruncated,
    // The target wrote this file: a count, or nothing.
    ...(Number.isSafeInteger(report.outputDroppedBytes) && (report.outputDroppedBytes as number) >= 0
      ? { outputDroppedBytes: report.outputDroppedBytes }
      : {}),
    pickedUpAt: str(report.pickedUpAt) ?? null,
    finishedAt: str(report.finishedAt) ?? null,
    thread:
      th && Number.isInteger(th.tid) && (th.tid as number) >= 0
        ? { tid: th.tid as number, name: th.name == null ? null : text(th.name, 256) }
        : null,
  };
  if (report.status === 'succeeded') {
    const r: ExecResult = { ...base, status: 'succeeded' };
    if (report.result !== undefined) r.result = encodeJsonStrings(report.result);
    return r;
  }
  const failed = (
    errorCode: ExecResult['errorCode'],
    message: string,
    status: ExecResult['status'] = 'failed',
  ): ExecResult => {
    const r: ExecResult = { ...base, status, errorCode, message: message.slice(0, 4096) };
    if (report.error && typeof report.error === 'object') {
      r.error = {
        type: text(report.error.type, 256),
        message: text(report.error.message, 64 * 1024),
      };
      if (report.error.traceback !== undefined) r.error.traceback = text(report.error.traceback, 256 * 1024);
    }
    return r;
  };
  if (report.status === 'harness_error')
    return failed(
      'HARNESS_ERROR',
      `the harness failed inside the target: ${text(report.error?.message ?? 'unknown', 1024)}`,
    );
  if (report.cancelled)
    return failed(
      'CANCELLED',
      'the run was cancelled and its code was stopped inside the target; the output so far is kept',
      'cancelled',
    );
  if (report.budgetExceeded) {
    const budget = opts.budgetMs === undefined ? 'its time budget' : `its time budget of ${opts.budgetMs} ms`;
    return failed(
      'TIME_BUDGET_EXCEEDED',
      `the code exceeded ${budget} and was stopped; the target keeps running`,
    );
  }
  return failed(
    'USER_EXCEPTION',
    `${text(report.error?.type ?? 'Exception', 256)}: ${text(report.error?.message ?? '', 2048)}`,
  );
}
