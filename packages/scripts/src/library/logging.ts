import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const params = z.object({
  logger: z
    .string()
    .max(200)
    .regex(/^$|^[A-Za-z_][A-Za-z0-9_.-]*$/, 'a logger name like "app.db" (empty for the root logger)')
    .default('')
    .describe('Logger name; empty means the root logger'),
  level: z.enum(['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL']).describe('New level'),
  adjustHandlers: z
    .boolean()
    .default(true)
    .describe(
      "Also lower the level of this logger's (and the root's) handlers that would filter the new level out",
    ),
});

export const setLogLevel: ScriptDefinition<typeof params> = {
  id: 'logging.set_level',
  version: 2,
  title: "Set a logger's level",
  description:
    'Changes the level of a logger (e.g. to DEBUG) in the running process, and optionally of the handlers that would ' +
    'otherwise drop the new records. Reports the previous levels so the change can be undone.',
  risk: 'medium',
  readOnly: false,
  params,
  source: String.raw`
import logging

name = params.get("logger") or ""
level_name = params["level"]
level = logging.getLevelNamesMapping()[level_name]
logger = logging.getLogger(name) if name else logging.getLogger()
previous = logging.getLevelName(logger.level)
previous_effective = logging.getLevelName(logger.getEffectiveLevel())
logger.setLevel(level)

changed_handlers = []
if params.get("adjustHandlers", True):
    seen = set()
    node = logger
    while node is not None:
        for handler in node.handlers:
            if id(handler) in seen:
                continue
            seen.add(id(handler))
            if handler.level > level:
                changed_handlers.append({"handler": repr(handler), "previous": logging.getLevelName(handler.level)})
                handler.setLevel(level)
        node = node.parent if node.propagate else None

inherited = f" (inherits {previous_effective})" if previous == "NOTSET" else ""
print(f"logger {name or 'root'!r}: {previous}{inherited} -> {level_name}")
for h in changed_handlers:
    print(f"handler {h['handler']}: {h['previous']} -> {level_name}")
result = {
    "logger": name or "root",
    "previous": previous,
    "previousEffective": previous_effective,
    "level": level_name,
    "effective": logging.getLevelName(logger.getEffectiveLevel()),
    "handlers": changed_handlers,
}
`,
};
