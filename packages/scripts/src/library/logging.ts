import { z } from 'zod';
import type { ScriptDefinition } from '../types';

/** Shortest and longest a level change may last before it restores itself (0 keeps the change). */
export const MIN_LOG_LEVEL_DURATION_SECONDS = 10;
export const MAX_LOG_LEVEL_DURATION_SECONDS = 24 * 3600;

/**
 * What one run of `logging.set_level` does. `set` is what a person files; `check` (read the outcome, change
 * nothing) and `restore` (restore now) are the follow-ups the control plane runs later under the same approval
 * with this same, approved source: the restore code is part of what was approved and hashed.
 */
export const LOG_LEVEL_MODES = ['set', 'check', 'restore'] as const;

const restoreToken = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/,
    'a token of letters, digits, _ and -, starting with a letter or digit (the control plane passes the request id)',
  );

const params = z.object({
  logger: z
    .string()
    .max(200)
    .regex(/^$|^[A-Za-z_][A-Za-z0-9_.-]*$/, 'a logger name like "app.db" (empty for the root logger)')
    .default('')
    .describe('Logger name; empty means the root logger'),
  level: z
    .enum(['NOTSET', 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'])
    .describe('New level (NOTSET: inherit from the parent logger)'),
  adjustHandlers: z
    .boolean()
    .default(true)
    .describe(
      "Also lower the level of this logger's (and the root's) handlers that would filter the new level out",
    ),
  durationSeconds: z
    .number()
    .int()
    .min(0)
    .max(MAX_LOG_LEVEL_DURATION_SECONDS)
    .refine((s) => s === 0 || s >= MIN_LOG_LEVEL_DURATION_SECONDS, {
      message: `at least ${MIN_LOG_LEVEL_DURATION_SECONDS} s (or 0 to keep the change)`,
    })
    .default(600)
    .describe(
      `Restore the previous levels after this many seconds (${MIN_LOG_LEVEL_DURATION_SECONDS} s to 24 h), inside the process itself; 0 keeps the change`,
    ),
  restoreToken: restoreToken
    .optional()
    .describe(
      'Names this change for its restore; the control plane fills in the request id, else generated and returned',
    ),
  mode: z
    .enum(LOG_LEVEL_MODES)
    .default('set')
    .describe(
      'set: make the change. check and restore are the read at expiry and "Restore now", run by Pyreach later under the same approval',
    ),
});

/**
 * Kept inside the target on the `logging` module itself (the thing the change is about), so the restore timer
 * and `logging.restore` find it whatever thread or injection runs next, and it lives exactly as long as the
 * process. Entry states: pending → restored | superseded (a later change of the same logger took it over,
 * restoring to the levels from before the first change).
 */
const REGISTRY = String.raw`
import logging
import threading
import time

_reg = logging.__dict__.setdefault("_pyreach_restores", {})
_lock = _reg.setdefault("__lock__", threading.Lock())


def _level_name(n):
    return logging.getLevelName(n)


def _restore(token, reason):
    with _lock:
        entry = _reg.get(token)
        if not entry or entry["state"] != "pending":
            return entry
        entry["state"] = "restoring"
    timer = entry.pop("_timer", None)
    if timer is not None and timer is not threading.current_thread():
        timer.cancel()
    outcome = []
    for obj, kind, label, previous, applied in entry.pop("_objects"):
        current = obj.level
        if current == applied:
            obj.setLevel(previous)
            outcome.append({"kind": kind, "name": label, "restored": _level_name(previous), "from": _level_name(applied)})
        else:
            # Someone changed it after us: their decision stands, and the report says so.
            outcome.append({"kind": kind, "name": label, "leftAt": _level_name(current), "expected": _level_name(applied),
                            "reason": "changed by someone else since; left alone"})
    entry.update(state="restored", restoredAt=time.time(), reason=reason, outcome=outcome)
    return entry


def _public(entry):
    return {k: v for k, v in entry.items() if not k.startswith("_")}


_reg["__restore__"] = _restore
_reg["__public__"] = _public
`;

export const setLogLevel: ScriptDefinition<typeof params> = {
  id: 'logging.set_level',
  version: 4,
  title: "Set a logger's level",
  description:
    'Changes the level of a logger (e.g. to DEBUG, or NOTSET to inherit) in the running process, and optionally of ' +
    'the handlers that would otherwise drop the new records. After the duration the process restores the previous ' +
    'levels itself (NOTSET included), leaving alone any level someone else changed meanwhile; the approval covers ' +
    'the restore too (the read at expiry and "Restore now" run this same source, mode check / restore).',
  risk: 'medium',
  readOnly: false,
  sensitive: false,
  undo: 'auto-restore',
  params,
  // Imports: logging (the thing changed), threading (the restore timer) and time, os — every CPython process
  // that logs has them loaded already; nothing else.
  source:
    REGISTRY +
    String.raw`
import os

mode = params.get("mode") or "set"
name = params.get("logger") or ""
label = name or "root"
logger = logging.getLogger(name) if name else logging.getLogger()


def _utc(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


if mode in ("check", "restore"):
    # The follow-ups of an approved change: read what happened (check), or restore it at once (restore).
    token = params.get("restoreToken") or ""
    entry = None if not token or token.startswith("__") else _reg.get(token)
    current = logging.getLevelName(logger.level)
    if entry is None:
        print(f"no level change with token {token!r} in this process (it was restarted, or the change had no duration); "
              f"logger {label!r} is at {current}")
        result = {"mode": mode, "token": token, "logger": label, "state": "unknown", "current": current}
    else:
        if mode == "restore" and entry["state"] == "pending":
            _restore(token, "restore-now")
        pub = _public(entry)
        print(f"change {token} of logger {pub['logger']!r}: {pub['state']}; logger {label!r} is at {current}")
        for o in pub.get("outcome", []):
            if "restored" in o:
                print(f"  {o['kind']} {o['name']}: {o['from']} -> {o['restored']}")
            else:
                print(f"  {o['kind']} {o['name']}: left at {o['leftAt']} ({o['reason']})")
        result = {"mode": mode, **pub, "current": current}
else:
    level_name = params["level"]
    level = logging.getLevelNamesMapping()[level_name]
    duration = params.get("durationSeconds", 600)
    token = params.get("restoreToken") or os.urandom(8).hex()
    previous = logger.level
    previous_effective = logging.getLevelName(logger.getEffectiveLevel())

    # A change of a logger that has one pending already takes the pending restore over: the end state restores
    # what the logger had before Pyreach first touched it, whichever change ends last.
    original = {}
    with _lock:
        for other_token, other in list(_reg.items()):
            if other_token.startswith("__") or other["state"] != "pending" or other["logger"] != label:
                continue
            timer = other.pop("_timer", None)
            if timer is not None:
                timer.cancel()
            for obj, kind, obj_label, prev, applied in other.pop("_objects"):
                if obj.level == applied:
                    original.setdefault(id(obj), prev)
            other.update(state="superseded", supersededBy=token, restoredAt=time.time())

    objects = [(logger, "logger", label, original.get(id(logger), previous), level)]
    logger.setLevel(level)
    changed_handlers = []
    if params.get("adjustHandlers", True) and level != logging.NOTSET:
        seen = set()
        node = logger
        while node is not None:
            for handler in node.handlers:
                if id(handler) in seen:
                    continue
                seen.add(id(handler))
                if handler.level > level:
                    changed_handlers.append({"handler": repr(handler), "previous": logging.getLevelName(handler.level)})
                    objects.append((handler, "handler", repr(handler), original.get(id(handler), handler.level), level))
                    handler.setLevel(level)
            node = node.parent if node.propagate else None

    restore_at = None
    if duration > 0:
        restore_at = time.time() + duration
        entry = {"token": token, "logger": label, "level": level_name, "state": "pending", "setAt": time.time(),
                 "restoreAt": restore_at, "_objects": objects}
        # A daemon timer in this process: the restore happens with the agent and the control plane gone.
        timer = threading.Timer(duration, _restore, args=(token, "expired"))
        timer.daemon = True
        timer.name = f"pyreach-restore-{token}"
        entry["_timer"] = timer
        with _lock:
            _reg[token] = entry
        timer.start()

    inherited = f" (inherits {previous_effective})" if previous == logging.NOTSET else ""
    until = (f"; restores itself at {_utc(restore_at)} (in {duration} s, token {token})" if restore_at
             else "; kept (no duration)")
    print(f"logger {label!r}: {logging.getLevelName(previous)}{inherited} -> {level_name}{until}")
    for h in changed_handlers:
        print(f"handler {h['handler']}: {h['previous']} -> {level_name}")
    result = {
        "mode": "set",
        "logger": label,
        "previous": logging.getLevelName(previous),
        "previousEffective": previous_effective,
        "level": level_name,
        "effective": logging.getLevelName(logger.getEffectiveLevel()),
        "handlers": changed_handlers,
        "restoreToken": token if restore_at else None,
        "restoreAt": restore_at,
        "durationSeconds": duration,
    }
`,
};

const restoreParams = z.object({
  restoreToken: restoreToken.describe(
    'The token logging.set_level returned (the request id when filed by Pyreach)',
  ),
  action: z
    .enum(['now', 'status'])
    .default('status')
    .describe('now: restore at once (if still pending); status: only report what happened'),
});

export const restoreLogLevel: ScriptDefinition<typeof restoreParams> = {
  id: 'logging.restore',
  version: 1,
  title: 'Restore (or check) a logging.set_level change',
  description:
    'Reports whether a level change made with a duration was restored, and to what; with action "now" restores it at ' +
    'once. A level someone else changed meanwhile is left alone and reported.',
  risk: 'low',
  readOnly: false,
  sensitive: false,
  undo: 'irreversible',
  params: restoreParams,
  source:
    REGISTRY +
    String.raw`
token = params["restoreToken"]
entry = _reg.get(token)
if entry is None or token.startswith("__"):
    print(f"no level change with token {token!r} in this process (it was restarted, or the change had no duration)")
    result = {"token": token, "state": "unknown"}
else:
    if params.get("action") == "now" and entry["state"] == "pending":
        _restore(token, "restore-now")
    pub = _public(entry)
    print(f"change {token} of logger {pub['logger']!r}: {pub['state']}")
    for o in pub.get("outcome", []):
        if "restored" in o:
            print(f"  {o['kind']} {o['name']}: {o['from']} -> {o['restored']}")
        else:
            print(f"  {o['kind']} {o['name']}: left at {o['leftAt']} ({o['reason']})")
    result = pub
`,
};
