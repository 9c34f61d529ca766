import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const params = z.object({
  top: z
    .number()
    .int()
    .min(1)
    .max(200)
    .default(20)
    .describe('How many of the most common object types to list'),
});

export const gcStats: ScriptDefinition<typeof params> = {
  id: 'gc.stats',
  version: 2,
  title: 'GC statistics and most common object types',
  description:
    "Reports the garbage collector's per-generation statistics and thresholds and counts the objects it tracks by type.",
  risk: 'low',
  readOnly: true,
  sensitive: false,
  undo: 'nothing',
  params,
  source: String.raw`
import gc

# A plain dict, not collections.Counter: a read-only script imports nothing the target had not loaded.
top = params.get("top", 20)
objects = gc.get_objects()
counts = {}
for o in objects:
    t = type(o)
    key = f"{t.__module__}.{t.__qualname__}"
    counts[key] = counts.get(key, 0) + 1
total = len(objects)
del objects
common = [{"type": name, "count": n} for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]
print(f"tracked objects: {total}")
print(f"counts per generation: {gc.get_count()}  thresholds: {gc.get_threshold()}  enabled: {gc.isenabled()}")
for row in common:
    print(f"{row['count']:>10}  {row['type']}")
result = {
    "enabled": gc.isenabled(),
    "tracked": total,
    "counts": list(gc.get_count()),
    "thresholds": list(gc.get_threshold()),
    "generations": gc.get_stats(),
    "garbage": len(gc.garbage),
    "top": common,
}
`,
};
