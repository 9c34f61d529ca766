import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const params = z.object({
  maxFrames: z.number().int().min(1).max(500).default(50).describe('Innermost frames kept per thread'),
});

export const dumpStacks: ScriptDefinition<typeof params> = {
  id: 'threads.dump_stacks',
  version: 1,
  title: "Dump every thread's stack",
  description: 'Prints the current Python stack of every thread (like py-spy dump), innermost frame last.',
  risk: 'low',
  readOnly: true,
  sensitive: false,
  undo: 'nothing',
  params,
  source: String.raw`
import sys
import threading
import traceback

max_frames = params.get("maxFrames", 50)
frames = sys._current_frames()
by_ident = {t.ident: t for t in threading.enumerate()}
me = threading.get_ident()
threads = []
for ident, frame in frames.items():
    t = by_ident.get(ident)
    stack = traceback.extract_stack(frame)[-max_frames:]
    entry = {
        "ident": ident,
        "name": t.name if t else None,
        "nativeId": getattr(t, "native_id", None) if t else None,
        "daemon": t.daemon if t else None,
        "pyreach": ident == me,
        "frames": [{"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line} for f in stack],
    }
    threads.append(entry)
    label = entry["name"] or "<unknown>"
    suffix = "  (this is the Pyreach harness thread)" if entry["pyreach"] else ""
    print(f"Thread {label} ident={ident} native_id={entry['nativeId']}{suffix}")
    print("".join(traceback.format_list(stack)).rstrip())
    print()
result = {"count": len(threads), "threads": threads}
`,
};
