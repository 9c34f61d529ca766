/**
 * A request's results by state (issue 16 item 4): identical outcomes grouped, the targets worth retrying, an
 * output's first line. Pure and browser-safe.
 */
import { isFailedExecution, type ExecutionState } from './states';

/**
 * Bytes of an execution's output the request detail carries (its `output` is a preview of at most this many
 * UTF-8 bytes, `outputPreview` saying it was cut for the view): 1,000 targets × 1 MiB would be a 1 GB page.
 * The whole output is the download's (`GET /api/requests/{id}/executions/{executionId}/output`).
 */
export const OUTPUT_PREVIEW_BYTES = 4096;

/**
 * `text` cut to at most `maxBytes` bytes of UTF-8 on a code point boundary (a surrogate pair, so a safe-text
 * escape, is never split), and whether anything was cut.
 */
export function previewOf(
  text: string,
  maxBytes: number = OUTPUT_PREVIEW_BYTES,
): { text: string; cut: boolean } {
  // A UTF-16 unit is at most 3 bytes of UTF-8 (a pair is 4 for two units): short strings need no count.
  if (text.length * 3 <= maxBytes) return { text, cut: false };
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length;
    const n = c < 0x80 ? 1 : c < 0x800 ? 2 : pair ? 4 : 3;
    if (bytes + n > maxBytes) return { text: text.slice(0, i), cut: true };
    bytes += n;
    if (pair) i++;
  }
  return { text, cut: false };
}

/**
 * What grouping compares: an execution's end as stored, nothing normalised. The output compares by its digest
 * (sha256 of the whole stored output, `ExecutionDetail.outputDigest`), so outputs that differ only after the
 * preview are told apart without either being loaded; `output` (the preview) is only shown.
 */
export interface OutcomeOf {
  id: string;
  state: ExecutionState;
  errorCode: string | null;
  output: string;
  outputDigest: string;
  result: unknown;
}

export interface OutcomeGroup<E extends OutcomeOf> {
  state: ExecutionState;
  errorCode: string | null;
  /** The first member's output (its preview when the detail carried one). */
  output: string;
  outputDigest: string;
  result: unknown;
  members: E[];
}

/**
 * The key two executions share exactly when they ended alike: same state, error code, byte-identical output (same
 * sha256 of the whole of it) and result. The result compares as its JSON text as stored (key order included):
 * `{"a":1,"b":2}` and `{"b":2,"a":1}` are two outcomes here, as are outputs differing in one trailing space or
 * newline, however far in.
 */
function outcomeKey(e: OutcomeOf): string {
  return JSON.stringify([e.state, e.errorCode, e.outputDigest, e.result === undefined ? null : e.result]);
}

/**
 * Groups executions that ended identically (see outcomeKey), largest group first (ties: the order their first
 * member came in); members keep their order. Executions still running are not grouped (they are left out).
 */
export function groupIdenticalOutcomes<E extends OutcomeOf>(
  executions: readonly E[],
  isEnded: (state: ExecutionState) => boolean,
): OutcomeGroup<E>[] {
  const groups = new Map<string, OutcomeGroup<E>>();
  for (const e of executions) {
    if (!isEnded(e.state)) continue;
    const k = outcomeKey(e);
    const g = groups.get(k);
    if (g) g.members.push(e);
    else
      groups.set(k, {
        state: e.state,
        errorCode: e.errorCode,
        output: e.output,
        outputDigest: e.outputDigest,
        result: e.result,
        members: [e],
      });
  }
  return [...groups.values()].sort((a, b) => b.members.length - a.members.length);
}

/** The output's first line that is not blank, without its line break ('' when there is none). */
export function firstLine(output: string): string {
  for (const line of output.split('\n')) if (line.trim() !== '') return line.replace(/\r$/, '');
  return '';
}

/** "37 targets: logger 'main': ERROR -> DEBUG": a group in one line. */
export function describeGroup(g: { members: readonly unknown[]; output: string; state: string }): string {
  const n = g.members.length;
  const line = firstLine(g.output);
  return `${n} target${n === 1 ? '' : 's'}: ${line || `(no output, ${g.state})`}`;
}

/**
 * The ends "retry the failed ones" takes again: failed, timed out at pickup, refused, agent lost, expired. Not
 * `target_gone`: that process exited, and a process is named by its start time, so no retry can reach it.
 */
export const RETRYABLE_STATES: ReadonlySet<ExecutionState> = new Set<ExecutionState>(
  (['failed', 'pickup_timeout', 'refused', 'agent_lost', 'expired'] as const).filter(isFailedExecution),
);

/** The executions "retry the failed ones" files again (succeeded, cancelled, gone and running ones are not). */
export function retryable<E extends { state: ExecutionState }>(executions: readonly E[]): E[] {
  return executions.filter((e) => RETRYABLE_STATES.has(e.state));
}

/** The markers a cut leaves at the end of the kept output (harness cap, agent fit, control-plane cap). */
const CUT_MARKERS = [
  /\n\[pyreach: output truncated at \d+ bytes\]\n$/,
  /\n\[pyreach: output truncated by the agent to fit one message; the streamed output events carry more\]\n$/,
  /\n\[pyreach: output truncated by the control plane\]\n$/,
];

/**
 * The kept output and how much was cut after it, for showing "… N bytes cut here …" in place. Only a cut that was
 * counted (`droppedBytes` not null) is shown, and only the markers at the very END come off: a target printing a
 * marker's text in its output cannot move the cut or hide its own lines.
 */
export function splitAtCut(
  output: string,
  droppedBytes: number | null,
): { kept: string; cut: number | null } {
  if (droppedBytes === null) return { kept: output, cut: null };
  let kept = output;
  for (let again = true; again;) {
    again = false;
    for (const m of CUT_MARKERS)
      if (m.test(kept)) {
        kept = kept.replace(m, '');
        again = true;
      }
  }
  return { kept, cut: droppedBytes };
}
