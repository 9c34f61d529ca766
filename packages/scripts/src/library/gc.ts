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
  version: 1,
  title: 'GC statistics and most common object types',
  description:
    "Reports the garbage collector's per-generation statistics and thresholds and counts the objects it tracks by type.",
  risk: 'low',
  readOnly: true,
  params,
  source: String.raw`
import gc
from collections import Counter

top = params.get("top", 20)
objects = gc.get_objects()
counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
total = len(objects)
del objects
common = [{"type": name, "count": n} for name, n in counts.most_common(top)]
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
