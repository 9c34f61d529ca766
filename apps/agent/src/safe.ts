/**
 * Defensive safe text (protocol/text.ts) for everything the agent journals and sends. The engine is the one
 * place that encodes what a target wrote; the agent only makes sure that nothing un-encoded leaves it — its
 * own messages, results recovered from a staging directory, results it shrank, a journal written by an older
 * agent, or an engine that predates safe text. A string that is already safe text is passed through untouched
 * (re-encoding it would escape the engine's escapes a second time); any other string is encoded losslessly.
 */
import type { JobEvent, ReportedResult } from '@pyreach/protocol/agent';
import type { Json } from '@pyreach/protocol/common';
import type { ExecResult } from '@pyreach/protocol/exec';
import { encodeString, isSafeText } from '@pyreach/protocol/text';

/** Safe text of `s`, at most `max` UTF-16 units (encoding can lengthen a string; a pair is never split). */
export function safeStr(s: string, max = Infinity): string {
  const safe = isSafeText(s) ? s : encodeString(s);
  if (safe.length <= max) return safe;
  const cut = safe.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

export function safeJson(v: Json): Json {
  if (typeof v === 'string') return safeStr(v);
  if (Array.isArray(v)) return v.map(safeJson);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v)) out[safeStr(k)] = safeJson(x);
    return out;
  }
  return v;
}

export function safeResult(r: ExecResult | ReportedResult): ReportedResult {
  const out: ReportedResult = { ...(r as ReportedResult), output: safeStr(r.output) };
  if (r.message !== undefined) out.message = safeStr(r.message, 4096);
  if (r.result !== undefined) out.result = safeJson(r.result);
  if (r.error) {
    out.error = { type: safeStr(r.error.type, 256), message: safeStr(r.error.message, 64 * 1024) };
    if (r.error.traceback !== undefined) out.error.traceback = safeStr(r.error.traceback, 256 * 1024);
  }
  if (r.thread)
    out.thread = { ...r.thread, name: r.thread.name == null ? r.thread.name : safeStr(r.thread.name, 256) };
  if (r.leftoverThread)
    out.leftoverThread = {
      ...r.leftoverThread,
      name: r.leftoverThread.name == null ? r.leftoverThread.name : safeStr(r.leftoverThread.name, 256),
    };
  if (r.pickedUpBy)
    out.pickedUpBy = {
      ...r.pickedUpBy,
      name: r.pickedUpBy.name == null ? r.pickedUpBy.name : safeStr(r.pickedUpBy.name, 256),
    };
  if (r.woken)
    out.woken = r.woken.map((w) => ({
      ...w,
      name: w.name == null ? w.name : safeStr(w.name, 256),
      syscall: safeStr(w.syscall, 64),
    }));
  return out;
}

/** The same event with every free-text field as safe text. */
export function safeEvent<E extends JobEvent>(ev: E): E {
  switch (ev.type) {
    case 'output':
      return { ...ev, chunk: safeStr(ev.chunk) };
    case 'result':
      return { ...ev, result: safeResult(ev.result) };
    case 'refused':
      return { ...ev, code: safeStr(ev.code, 64), message: safeStr(ev.message, 4096) };
    default:
      return ev;
  }
}
