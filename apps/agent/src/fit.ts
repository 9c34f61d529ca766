/**
 * A result must fit in one socket message (the server refuses larger ones with PAYLOAD_TOO_LARGE, which
 * would strand the job). Code can make its output, its `result` or its traceback arbitrarily large, so the
 * agent shrinks a result that does not fit — visibly, never silently — before it is journalled.
 */
import { AGENT_EVENT_MAX_BYTES, type ReportedResult } from '@pyreach/protocol/agent';
import { jsonBytes } from '@pyreach/protocol/common';
import type { InspectIssue, StacksReport, TasksReport } from '@pyreach/protocol/inspect';

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
    const kept = cutUtf8(result.output, budget);
    r.output =
      kept +
      '\n[pyreach: output truncated by the agent to fit one message; the streamed output events carry more]\n';
    r.outputTruncated = true;
    // What the engine's cap dropped (the harness counted it), and what this cut drops on top.
    r.outputDroppedBytes =
      (result.outputDroppedBytes ?? 0) +
      Buffer.byteLength(result.output, 'utf8') -
      Buffer.byteLength(kept, 'utf8');
  }
  if (notes.length) r.message = `${r.message ? r.message + '; ' : ''}${notes.join('; ')}`.slice(0, 4096);
  return r;
}

// ---- inspection reports ---------------------------------------------------------------------------------

/** Room left in a result for everything but the report (status, message, the event envelope). */
export const REPORT_MAX_BYTES = RESULT_MAX_BYTES - 16 * 1024;

/** One thread, task or future: its own fields plus the lists that can be cut (frames, awaiters). */
interface Entry {
  base: number;
  /** Sizes of the elements of each list, in order (kept from the front: innermost frame first). */
  lists: number[][];
}

function estimate(outer: number, entries: Entry[], k: number, n: number): number {
  let total = outer;
  for (let e = 0; e < n; e++) {
    const entry = entries[e]!;
    total += entry.base + 1;
    for (const list of entry.lists) for (let i = 0; i < Math.min(k, list.length); i++) total += list[i]! + 1;
  }
  return total;
}

/** Largest x in [lo, hi] with ok(x), or lo - 1 when none (ok is monotone: true up to a point). */
function largest(lo: number, hi: number, ok: (x: number) => boolean): number {
  if (!ok(lo)) return lo - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function withIssue<R extends StacksReport | TasksReport>(r: R, issue: InspectIssue): R {
  const errors = [...r.errors];
  // Keep within the schema's bound: the agent's note replaces the last one if it is full.
  if (errors.length >= 64) errors[63] = issue;
  else errors.push(issue);
  return { ...r, errors, status: r.status === 'complete' ? 'partial' : r.status };
}

/**
 * A report that does not fit one message is cut so that it still parses with its schema and says so: first
 * every thread's (task's) frame list and awaiter list to the same length — the innermost frames are kept and
 * `truncated` is set — then, if even one frame each is too much, the last threads (tasks, then futures) are
 * left out. A process-wide TRUNCATED issue says what was cut and the status becomes `partial`. The reader's own
 * bounds (threads, frames, name lengths) keep the input finite; this keeps the output within the wire.
 */
export function fitReport<R extends StacksReport | TasksReport>(
  report: R,
  maxBytes = REPORT_MAX_BYTES,
): { report: R; note: string | null } {
  if (jsonBytes(report) <= maxBytes) return { report, note: null };
  const isStacks = 'threads' in report;
  const sizes = (xs: readonly unknown[]): number[] => xs.map((x) => jsonBytes(x));
  let entries: Entry[];
  let outer: number;
  if (isStacks) {
    const r = report as StacksReport;
    entries = r.threads.map((t) => ({ base: jsonBytes({ ...t, frames: [] }), lists: [sizes(t.frames)] }));
    outer = jsonBytes({ ...r, threads: [] });
  } else {
    const r = report as TasksReport;
    entries = [
      ...r.tasks.map((t) => ({
        base: jsonBytes({ ...t, stack: [], awaitedBy: [] }),
        lists: [sizes(t.stack), sizes(t.awaitedBy)],
      })),
      ...r.futures.map((f) => ({ base: jsonBytes({ ...f, awaitedBy: [] }), lists: [sizes(f.awaitedBy)] })),
    ];
    outer = jsonBytes({ ...r, tasks: [], futures: [] });
  }
  const noteRoom = 1024; // the TRUNCATED issue and the status change
  const budget = maxBytes - noteRoom;
  const longest = Math.max(1, ...entries.flatMap((e) => e.lists.map((l) => l.length)));
  let k = largest(1, longest, (x) => estimate(outer, entries, x, entries.length) <= budget);
  let n = entries.length;
  if (k < 1) {
    k = 1;
    n = Math.max(
      0,
      largest(0, entries.length, (x) => estimate(outer, entries, 1, x) <= budget),
    );
  }

  const build = (k: number, n: number): R => {
    const cut = <T>(xs: T[]): T[] => (xs.length > k ? xs.slice(0, k) : xs);
    let out: R;
    let what: string;
    if (isStacks) {
      const r = report as StacksReport;
      const threads = r.threads
        .slice(0, n)
        .map((t) => (t.frames.length > k ? { ...t, frames: cut(t.frames), truncated: true } : t));
      out = { ...r, threads } as R;
      what = `at most ${k} frame(s) per thread kept (innermost first; "truncated" marks each cut thread)${n < r.threads.length ? `, ${r.threads.length - n} of ${r.threads.length} threads left out (the last ones)` : ''}`;
    } else {
      const r = report as TasksReport;
      const tasks = r.tasks.slice(0, Math.min(n, r.tasks.length)).map((t) =>
        t.stack.length > k || t.awaitedBy.length > k
          ? {
              ...t,
              stack: cut(t.stack),
              awaitedBy: cut(t.awaitedBy),
              truncated: t.truncated || t.stack.length > k,
            }
          : t,
      );
      const futures = r.futures
        .slice(0, Math.max(0, n - r.tasks.length))
        .map((f) => (f.awaitedBy.length > k ? { ...f, awaitedBy: cut(f.awaitedBy) } : f));
      out = { ...r, tasks, futures } as R;
      const left = r.tasks.length - tasks.length;
      const leftF = r.futures.length - futures.length;
      what = `at most ${k} frame(s) per coroutine stack and ${k} awaiter(s) per task or future kept${left ? `, ${left} of ${r.tasks.length} tasks left out (the last ones)` : ''}${leftF ? `, ${leftF} of ${r.futures.length} awaiting futures left out` : ''}`;
    }
    const note = `the report (${jsonBytes(report)} bytes as JSON) was cut by the agent to fit one message (${maxBytes} bytes): ${what}`;
    return withIssue(out, { code: 'TRUNCATED', message: note });
  };

  let out = build(k, n);
  // The estimate ignores small per-field differences; halve until the real size fits.
  for (let i = 0; jsonBytes(out) > maxBytes && i < 64; i++) {
    if (k > 1) k = Math.floor(k / 2);
    else n = Math.floor(n / 2);
    out = build(k, n);
  }
  return { report: out, note: out.errors[out.errors.length - 1]!.message };
}
