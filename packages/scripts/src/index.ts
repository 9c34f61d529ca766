import { z } from 'zod';
import { jsonBytes, MAX_PARAMS_BYTES, type JsonObject } from '@pyreach/protocol/common';
import { asyncioTasks } from './library/asyncio';
import { lruClear, lruInfo } from './library/cache';
import { gcStats } from './library/gc';
import { interpreterInfo } from './library/interpreter';
import { restoreLogLevel, setLogLevel } from './library/logging';
import { dumpStacks } from './library/threads';
import { tracemallocTop } from './library/tracemalloc';
import type { ScriptDefinition } from './types';

export type { RiskLevel, ScriptDefinition } from './types';
export {
  LOG_LEVEL_MODES,
  MAX_LOG_LEVEL_DURATION_SECONDS,
  MIN_LOG_LEVEL_DURATION_SECONDS,
} from './library/logging';

/** The built-in library, in the order the dashboard lists it. */
export const SCRIPTS: readonly ScriptDefinition[] = [
  setLogLevel,
  restoreLogLevel,
  dumpStacks,
  gcStats,
  lruInfo,
  lruClear,
  tracemallocTop,
  asyncioTasks,
  interpreterInfo,
];

const byId = new Map(SCRIPTS.map((s) => [s.id, s]));

export function getScript(id: string): ScriptDefinition | undefined {
  return byId.get(id);
}

/** What a browser or API client needs to render a form: no zod objects, a JSON Schema instead. */
export interface ScriptSummary {
  id: string;
  version: number;
  title: string;
  description: string;
  risk: ScriptDefinition['risk'];
  readOnly: boolean;
  sensitive: boolean;
  undo: ScriptDefinition['undo'];
  reversible: boolean;
  inline: boolean;
  paramsSchema: unknown;
  source: string;
}

export function describeScript(s: ScriptDefinition): ScriptSummary {
  return {
    id: s.id,
    version: s.version,
    title: s.title,
    description: s.description,
    risk: s.risk,
    readOnly: s.readOnly,
    sensitive: s.sensitive,
    undo: s.undo,
    reversible: s.undo !== 'irreversible',
    inline: s.inline ?? false,
    paramsSchema: z.toJSONSchema(s.params, { io: 'input' }),
    source: s.source,
  };
}

export type ParamsCheck =
  | { ok: true; script: ScriptDefinition; params: JsonObject }
  | { ok: false; code: 'UNKNOWN_SCRIPT' | 'INVALID_PARAMS' | 'PARAMS_TOO_LARGE'; message: string };

/**
 * Validates parameters for a library script and fills in defaults. The result is what travels to the target
 * as JSON data (never pasted into the source).
 */
export function checkScriptParams(id: string, input: unknown): ParamsCheck {
  const script = byId.get(id);
  if (!script) return { ok: false, code: 'UNKNOWN_SCRIPT', message: `no library script with id "${id}"` };
  if (jsonBytes(input ?? {}) > MAX_PARAMS_BYTES) {
    return { ok: false, code: 'PARAMS_TOO_LARGE', message: `parameters exceed ${MAX_PARAMS_BYTES} bytes` };
  }
  const parsed = script.params.safeParse(input ?? {});
  if (!parsed.success) {
    return {
      ok: false,
      code: 'INVALID_PARAMS',
      message: `invalid parameters for ${id}: ${z.prettifyError(parsed.error)}`,
    };
  }
  return { ok: true, script, params: parsed.data as JsonObject };
}
