import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const params = z.object({
  includeModules: z.boolean().default(true).describe('List the names of loaded modules'),
});

export const interpreterInfo: ScriptDefinition<typeof params> = {
  id: 'interpreter.info',
  version: 3,
  title: 'Interpreter facts',
  description:
    'Version, executable, flags, GIL state, loaded modules and sys.path of the running interpreter.',
  risk: 'low',
  readOnly: true,
  // argv, cwd, executable and sys.path can hold secrets (tokens passed on the command line, user names).
  sensitive: true,
  undo: 'nothing',
  params,
  source: String.raw`
import os
import sys
import threading

gil = getattr(sys, "_is_gil_enabled", lambda: True)()
facts = {
    "version": sys.version,
    "versionInfo": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "executable": sys.executable,
    "platform": " ".join(os.uname()),
    "pid": os.getpid(),
    "argv": list(sys.argv),
    "cwd": os.getcwd(),
    "gilEnabled": gil,
    "remoteDebugEnabled": sys.is_remote_debug_enabled(),
    "threads": threading.active_count(),
    "path": list(sys.path),
    "moduleCount": len(sys.modules),
}
if params.get("includeModules", True):
    facts["modules"] = sorted(sys.modules)
print(f"Python {'.'.join(map(str, facts['versionInfo']))} ({facts['implementation']}) at {facts['executable']}, pid {facts['pid']}")
print(f"GIL enabled: {gil}; remote debugging: {facts['remoteDebugEnabled']}; threads: {facts['threads']}")
print(f"{facts['moduleCount']} modules loaded; sys.path:")
for p in facts["path"]:
    print(f"  {p}")
result = facts
`,
};
