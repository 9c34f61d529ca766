import { z } from 'zod';
import type { ScriptDefinition } from '../types';

const params = z.object({
  maxFrames: z.number().int().min(1).max(100).default(10).describe('Frames of each task stack to include'),
  includeDone: z.boolean().default(false).describe('Also list tasks that have finished'),
});

export const asyncioTasks: ScriptDefinition<typeof params> = {
  id: 'asyncio.tasks',
  version: 2,
  title: 'List asyncio tasks',
  description:
    'Finds every asyncio event loop in the process and lists its tasks with their coroutine and current stack.',
  risk: 'low',
  readOnly: true,
  sensitive: false,
  undo: 'nothing',
  params,
  source: String.raw`
import gc
import sys

# Only a process that uses asyncio can have loops: importing it here would load ~50 modules into one that never did.
asyncio = sys.modules.get("asyncio")
max_frames = params.get("maxFrames", 10)
include_done = params.get("includeDone", False)
loops = []
if asyncio is not None:
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()]
report = []
for loop in loops:
    tasks = []
    for task in list(asyncio.all_tasks(loop)) if loop.is_running() else []:
        if task.done() and not include_done:
            continue
        coro = task.get_coro()
        frames = task.get_stack(limit=max_frames)
        tasks.append({
            "name": task.get_name(),
            "coro": getattr(coro, "__qualname__", repr(coro)),
            "done": task.done(),
            "cancelled": task.cancelled(),
            "stack": [f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}" for f in frames],
        })
    report.append({"loop": repr(loop), "running": loop.is_running(), "tasks": tasks})
    print(f"{loop!r}: {len(tasks)} task(s)")
    for t in tasks:
        where = t["stack"][-1] if t["stack"] else "(no frame)"
        print(f"  {t['name']}: {t['coro']} at {where}")
if asyncio is None:
    print("asyncio is not loaded in this process: no event loops")
elif not loops:
    print("no asyncio event loop found in this process")
result = {"loops": report, "taskCount": sum(len(l["tasks"]) for l in report), "asyncioLoaded": asyncio is not None}
`,
};
