import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const params = z.object({
  seconds: z
    .number()
    .min(0)
    .max(120)
    .default(5)
    .describe('If tracemalloc is not already tracing: trace for this long, then report and stop tracing'),
  top: z.number().int().min(1).max(100).default(10).describe('How many allocation sites to report'),
  groupBy: z
    .enum(['lineno', 'filename', 'traceback'])
    .default('lineno')
    .describe('How allocations are grouped'),
  frames: z.number().int().min(1).max(50).default(1).describe('Frames stored per allocation while tracing'),
});

export const tracemallocTop: ScriptDefinition<typeof params> = {
  id: 'tracemalloc.top',
  version: 1,
  title: 'Top memory allocations (tracemalloc)',
  description:
    'Reports the allocation sites holding the most memory. If tracemalloc is off it is switched on for the given number ' +
    'of seconds and off again afterwards, so only allocations made in that window are seen.',
  risk: 'medium',
  // Not read-only: it switches tracing on for the window (and imports tracemalloc if the target had not).
  readOnly: false,
  sensitive: false,
  // Tracing it switched on is switched off again by the script itself.
  undo: 'auto-restore',
  params,
  source: String.raw`
import time
import tracemalloc

started_here = not tracemalloc.is_tracing()
if started_here:
    tracemalloc.start(params.get("frames", 1))
    time.sleep(params.get("seconds", 5))
try:
    snapshot = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
finally:
    if started_here:
        tracemalloc.stop()
snapshot = snapshot.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
stats = snapshot.statistics(params.get("groupBy", "lineno"))[: params.get("top", 10)]
rows = []
for s in stats:
    frame = s.traceback[0]
    rows.append({"file": frame.filename, "line": frame.lineno, "sizeBytes": s.size, "count": s.count,
                 "traceback": s.traceback.format() if params.get("groupBy") == "traceback" else None})
    print(f"{s.size / 1024:10.1f} KiB  {s.count:8} blocks  {frame.filename}:{frame.lineno}")
result = {"startedHere": started_here, "tracedBytes": current, "peakBytes": peak, "top": rows}
`,
};
