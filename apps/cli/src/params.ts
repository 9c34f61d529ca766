/** `--param k=v` typed by a library script's JSON Schema (numbers, booleans, enums, JSON for arrays/objects). */
import type { JsonSchema } from '@pyreach/protocol/api';
import { UsageError } from './config';

function typeOf(s: JsonSchema | undefined): string | undefined {
  if (!s) return undefined;
  if (typeof s.type === 'string') return s.type;
  if (Array.isArray(s.type)) return s.type.find((t) => t !== 'null');
  const alt = s.anyOf ?? s.oneOf;
  return alt ? alt.map(typeOf).find((t) => t && t !== 'null') : undefined;
}

export function typedParams(schema: JsonSchema, pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new UsageError(`--param ${pair}: expected key=value`);
    const key = pair.slice(0, i);
    const raw = pair.slice(i + 1);
    const prop = schema.properties?.[key];
    if (!prop)
      throw new UsageError(
        `--param ${key}: the script has no such parameter (known: ${Object.keys(schema.properties ?? {}).join(', ')})`,
      );
    const t = typeOf(prop);
    let value: unknown = raw;
    if (t === 'integer' || t === 'number') {
      value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value) || (t === 'integer' && !Number.isInteger(value)))
        throw new UsageError(
          `--param ${key}: expected ${t === 'integer' ? 'an integer' : 'a number'}, got '${raw}'`,
        );
    } else if (t === 'boolean') {
      if (raw !== 'true' && raw !== 'false') throw new UsageError(`--param ${key}: expected true or false`);
      value = raw === 'true';
    } else if (t === 'array' || t === 'object') {
      try {
        value = JSON.parse(raw);
      } catch {
        throw new UsageError(`--param ${key}: expected JSON (${t})`);
      }
    }
    if (prop?.enum && !prop.enum.includes(value))
      throw new UsageError(`--param ${key}: one of ${prop.enum.map((v) => JSON.stringify(v)).join(', ')}`);
    out[key] = value;
  }
  return out;
}
