import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const dottedPath = z
  .string()
  .min(1)
  .max(300)
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/,
    'a dotted path like "app.users.get_user" or "__main__.lookup"',
  )
  .describe('Dotted path to an lru_cache-wrapped function: module path, then attributes');

// Shared resolver: finds the object by walking attributes from the longest already-imported module prefix.
// It never imports a module, so inspecting a cache cannot trigger a module's import-time side effects.
const RESOLVE = String.raw`
import sys

def _resolve(path):
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj = module
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                raise LookupError(f"{'.'.join(parts[:cut])} has no attribute path {'.'.join(parts[cut:])!r} (stopped at {attr!r})")
            obj = getattr(obj, attr)
        return obj
    raise LookupError(f"no loaded module is a prefix of {path!r}; loaded top-level modules include: " + ", ".join(sorted(m for m in sys.modules if "." not in m)[:40]))

target = _resolve(params["path"])
if not (callable(getattr(target, "cache_info", None)) and callable(getattr(target, "cache_clear", None))):
    raise TypeError(f"{params['path']} is a {type(target).__name__}, not a functools.lru_cache/cache wrapper")

def _info(fn):
    ci = fn.cache_info()
    return {"hits": ci.hits, "misses": ci.misses, "maxsize": ci.maxsize, "currsize": ci.currsize}
`;

const inspectParams = z.object({ path: dottedPath });
const clearParams = z.object({ path: dottedPath });

export const lruInfo: ScriptDefinition<typeof inspectParams> = {
  id: 'cache.lru_info',
  version: 1,
  title: 'Inspect a functools.lru_cache',
  description:
    'Finds an lru_cache-wrapped function by dotted path in the loaded modules and reports hits, misses and size.',
  risk: 'low',
  readOnly: true,
  sensitive: false,
  undo: 'nothing',
  params: inspectParams,
  source:
    RESOLVE +
    String.raw`
info = _info(target)
wrapped = getattr(target, "__wrapped__", None)
print(f"{params['path']}: {info}")
result = {"path": params["path"], "function": getattr(wrapped, "__qualname__", None), **info}
`,
};

export const lruClear: ScriptDefinition<typeof clearParams> = {
  id: 'cache.lru_clear',
  version: 1,
  title: 'Clear a functools.lru_cache',
  description:
    'Finds an lru_cache-wrapped function by dotted path and clears it, reporting its statistics before and after.',
  risk: 'medium',
  readOnly: false,
  sensitive: false,
  undo: 'irreversible',
  params: clearParams,
  source:
    RESOLVE +
    String.raw`
before = _info(target)
target.cache_clear()
after = _info(target)
print(f"cleared {params['path']}: {before['currsize']} entries dropped")
result = {"path": params["path"], "before": before, "after": after}
`,
};
