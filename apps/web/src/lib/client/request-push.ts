/**
 * Pushed /ui events applied to a fetched request, without reading the request again (issue 15 item 3). Pure: no
 * React, no socket (the hook is in use-live-request.ts).
 *
 * Every agent report of an execution has its place in the execution's report sequence (1, 2, 3, …): an output
 * chunk and the state update of the same report share it, and a fetched execution says up to which report it
 * holds (`ExecutionDetail.seq`). So a pushed event is applied when it is the next one, ignored when it is one the
 * page already holds, and a gap (a report the page never saw) asks for a refetch; so does anything the push does
 * not carry: an execution that ended (its result, error and final output), an execution the page does not know,
 * a request record that changed (edit, vote, cancel, end). Output chunks grow an execution's output only up to
 * the preview the API would send (OUTPUT_PREVIEW_BYTES), then mark it a preview: the page never holds more.
 */
import type { ExecutionDetail, RequestDetail } from '@pyreach/protocol/api';
import { previewOf } from '@pyreach/protocol/results';
import { EXECUTION, executionStateCounts } from '@pyreach/protocol/states';
import type { UiEvent } from '@pyreach/protocol/ui';

export type Push =
  | { type: 'output'; msg: UiEvent<'execution:output'> }
  | { type: 'update'; msg: UiEvent<'execution:update'> }
  | { type: 'request'; msg: UiEvent<'request:changed'> };

/** Why the page must read the request again; null: the push was applied (or was nothing new). */
export type Refetch = 'gap' | 'unknown-execution' | 'execution-ended' | 'record-changed' | null;

export interface Applied {
  /** The request with the push applied: the SAME object when it changed nothing (a duplicate, another request). */
  request: RequestDetail;
  refetch: Refetch;
}

const utf8 = new TextEncoder();

const counts = (executions: readonly ExecutionDetail[]) =>
  executionStateCounts(executions.map((e) => e.state));

function withExecution(
  r: RequestDetail,
  i: number,
  e: ExecutionDetail,
  stateChanged: boolean,
): RequestDetail {
  const executions = r.executions.slice();
  executions[i] = e;
  return { ...r, executions, ...(stateChanged ? { executionCounts: counts(executions) } : {}) };
}

/** Applies one pushed event to `r` (a request this page fetched, with pushes applied since). */
export function applyPush(r: RequestDetail, push: Push): Applied {
  const same = (refetch: Refetch = null): Applied => ({ request: r, refetch });
  if (push.msg.requestId !== r.id) return same();
  if (push.type === 'request') {
    const m = push.msg;
    if (m.progress && m.state === r.state) return same();
    return { request: m.state === r.state ? r : { ...r, state: m.state }, refetch: 'record-changed' };
  }
  const i = r.executions.findIndex((e) => e.id === push.msg.executionId);
  if (i < 0) return same('unknown-execution');
  const e = r.executions[i]!;
  if (push.type === 'output') {
    const m = push.msg;
    if (m.seq <= e.seq) return same();
    if (m.seq > e.seq + 1) return same('gap');
    // The page holds a preview, as the API sends it: chunks append up to the cap, the rest is the download's.
    const next = e.outputPreview ? null : previewOf(e.output + m.chunk);
    const grown = { ...e, seq: m.seq, outputBytes: e.outputBytes + utf8.encode(m.chunk).length };
    return {
      request: withExecution(
        r,
        i,
        next ? { ...grown, output: next.text, outputPreview: next.cut } : grown,
        false,
      ),
      refetch: null,
    };
  }
  const m = push.msg;
  if (m.seq !== undefined) {
    if (m.seq <= e.seq) return same();
    if (m.seq > e.seq + 1) return same('gap');
  } else if (m.state === e.state) {
    // The control plane's own transition, already held.
    return same();
  }
  const changed = m.state !== e.state;
  const next: ExecutionDetail = {
    ...e,
    ...(m.seq !== undefined ? { seq: m.seq } : {}),
    state: m.state,
    ...(m.errorCode !== undefined ? { errorCode: m.errorCode } : {}),
    ...(changed ? { queuedBehind: null } : {}),
  };
  const ended = changed && EXECUTION[m.state].terminal;
  return { request: withExecution(r, i, next, changed), refetch: ended ? 'execution-ended' : null };
}

/**
 * A fetched request, with the pushes that arrived while it was being read applied on top (the ones it already
 * holds are ignored by their sequence); a refetch they still ask for is returned with it.
 */
export function rebase(fetched: RequestDetail, since: readonly Push[]): Applied {
  let request = fetched;
  let refetch: Refetch = null;
  for (const p of since) {
    const a = applyPush(request, p);
    request = a.request;
    // What a push applied on top of the read still lacks (an end's result, a changed record) is read again.
    refetch = a.refetch ?? refetch;
  }
  return { request, refetch };
}

/**
 * The approvals queue (pending requests) and one `request:changed`: `ignore` a request's progress or anything
 * about one that neither is listed nor became pending; `remove` a listed one that left `pending` (applied as is,
 * nothing to read); `refetch` for a request newly pending or a listed one whose record changed (edit, vote).
 */
export function queueAction(
  listed: ReadonlySet<string>,
  msg: UiEvent<'request:changed'>,
): 'ignore' | 'remove' | 'refetch' {
  const here = listed.has(msg.requestId);
  if (msg.state !== 'pending') return here ? 'remove' : 'ignore';
  if (msg.progress && here) return 'ignore';
  return 'refetch';
}
