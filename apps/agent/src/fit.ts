/**
 * A result must fit in one socket message (the server refuses larger ones with PAYLOAD_TOO_LARGE, which
 * would strand the job). Code can make its output, its `result` or its traceback arbitrarily large, so the
 * agent shrinks a result that does not fit — visibly, never silently — before it is journalled.
 */
import { AGENT_EVENT_MAX_BYTES, type ReportedResult } from '@pyreach/protocol/agent';
import { jsonBytes } from '@pyreach/protocol/common';

/** Room for the event envelope (type, jobId, seq, at) on top of the result. */
export const RESULT_MAX_BYTES = AGENT_EVENT_MAX_BYTES['job:event'] - 16 * 1024;

function cutUtf8(s: string, maxBytes: number): string {
  const buf = Buffer.from(s, 'utf8');
  if (buf.byteLength <= maxBytes) return s;
  // Drop a partial character at the cut.
  return buf
    .subarray(0, Math.max(0, maxBytes))
    .toString('utf8')
    .replace(/\uFFFD$/, '');
}

/** Takes safe text and keeps it safe text (cuts fall on whole characters, so never inside an escape). */
export function fitResult(result: ReportedResult, maxBytes = RESULT_MAX_BYTES): ReportedResult {
  if (jsonBytes(result) <= maxBytes) return result;
  const r: ReportedResult = { ...result };
  const notes: string[] = [];
  if (r.result !== undefined && jsonBytes(r.result) > maxBytes / 4) {
    notes.push(
      `the result value (${jsonBytes(r.result)} bytes as JSON) was too large to report and was dropped`,
    );
    r.result = `<result too large to report: ${jsonBytes(r.result)} bytes>`;
  }
  if (r.error?.traceback && jsonBytes(r.error.traceback) > 64 * 1024) {
    r.error = {
      ...r.error,
      traceback: cutUtf8(r.error.traceback, 64 * 1024) + '\n[pyreach: traceback truncated by the agent]',
    };
  }
  // Output: escaped JSON can be up to 6x its UTF-8 size, so cut by measured size, halving until it fits.
  let budget = Buffer.byteLength(r.output, 'utf8');
  while (jsonBytes(r) > maxBytes && budget > 0) {
    budget = Math.floor(budget / 2);
    r.output =
      cutUtf8(result.output, budget) +
      '\n[pyreach: output truncated by the agent to fit one message; the streamed output events carry more]\n';
    r.outputTruncated = true;
  }
  if (notes.length) r.message = `${r.message ? r.message + '; ' : ''}${notes.join('; ')}`.slice(0, 4096);
  return r;
}
