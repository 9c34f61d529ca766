'use client';
/**
 * A form generated from a library script's JSON Schema (what `describeScript` gives the browser). Covers the
 * shapes the library uses — strings (free, pattern or enum), numbers/integers with bounds, booleans — and falls
 * back to a JSON text box for anything else. The server validates again with the zod schema.
 */
import type { JsonSchema } from '@pyreach/protocol/api';
import { Input, NativeSelect, Textarea } from './ui/input';
import { Field } from './ui/label';
import { Switch } from './ui/checkbox';

export type ParamValues = Record<string, unknown>;

export function defaultsOf(schema: JsonSchema): ParamValues {
  const out: ParamValues = {};
  for (const [k, p] of Object.entries(schema.properties ?? {})) {
    if (p.default !== undefined) out[k] = p.default;
    else if (p.type === 'boolean') out[k] = false;
  }
  return out;
}

function typeOf(p: JsonSchema): string {
  return Array.isArray(p.type) ? (p.type.find((t) => t !== 'null') ?? 'string') : (p.type ?? 'string');
}

/** Client-side checks for immediate feedback (the server's zod schema stays the authority). */
export function validateParams(schema: JsonSchema, values: ParamValues): Record<string, string> {
  const errors: Record<string, string> = {};
  const required = new Set(schema.required ?? []);
  for (const [k, p] of Object.entries(schema.properties ?? {})) {
    const v = values[k];
    const t = typeOf(p);
    if (v === undefined || v === '') {
      if (
        required.has(k) &&
        !(t === 'string' && p.enum === undefined && p.minLength === undefined && v === '')
      )
        errors[k] = 'Required';
      continue;
    }
    if (t === 'integer' || t === 'number') {
      if (typeof v !== 'number' || Number.isNaN(v)) errors[k] = 'Enter a number';
      else if (t === 'integer' && !Number.isInteger(v)) errors[k] = 'Enter a whole number';
      else if (p.minimum !== undefined && v < p.minimum) errors[k] = `At least ${p.minimum}`;
      else if (p.maximum !== undefined && v > p.maximum) errors[k] = `At most ${p.maximum}`;
    } else if (t === 'string' && typeof v === 'string') {
      if (p.minLength !== undefined && v.length < p.minLength)
        errors[k] = p.minLength === 1 ? 'Required' : `At least ${p.minLength} characters`;
      else if (p.maxLength !== undefined && v.length > p.maxLength)
        errors[k] = `At most ${p.maxLength} characters`;
      else if (p.pattern) {
        try {
          if (!new RegExp(p.pattern, 'u').test(v)) errors[k] = `Does not match ${p.pattern}`;
        } catch {
          /* a pattern JS cannot compile is left to the server */
        }
      }
    }
  }
  return errors;
}

function humanize(key: string): string {
  return key.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());
}

export function SchemaForm({
  schema,
  values,
  onChange,
  errors,
  idPrefix,
}: {
  schema: JsonSchema;
  values: ParamValues;
  onChange: (v: ParamValues) => void;
  errors: Record<string, string>;
  idPrefix: string;
}) {
  const props = Object.entries(schema.properties ?? {});
  const required = new Set(schema.required ?? []);
  if (props.length === 0)
    return <p className="text-sm text-muted-foreground">This script takes no parameters.</p>;
  const set = (k: string, v: unknown) => onChange({ ...values, [k]: v });
  return (
    <div className="grid gap-4 sm:grid-cols-2">
      {props.map(([key, p]) => {
        const id = `${idPrefix}-${key}`;
        const t = typeOf(p);
        const label = (
          <>
            {p.title ?? humanize(key)}
            {required.has(key) ? <span className="text-destructive"> *</span> : null}
            <span className="ml-1.5 font-mono text-xs font-normal text-muted-foreground">{key}</span>
          </>
        );
        const describedBy =
          [p.description ? `${id}-hint` : '', errors[key] ? `${id}-error` : ''].filter(Boolean).join(' ') ||
          undefined;
        const invalid = errors[key] ? true : undefined;
        let control;
        if (p.enum) {
          control = (
            <NativeSelect
              id={id}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              required={required.has(key)}
              value={values[key] === undefined ? '' : String(values[key])}
              onChange={(e) =>
                set(
                  key,
                  e.target.value === '' ? undefined : p.enum!.find((x) => String(x) === e.target.value),
                )
              }
            >
              {!required.has(key) || values[key] === undefined ? <option value="">— choose —</option> : null}
              {p.enum.map((opt) => (
                <option key={String(opt)} value={String(opt)}>
                  {String(opt)}
                </option>
              ))}
            </NativeSelect>
          );
        } else if (t === 'boolean') {
          control = (
            <div className="flex h-9 items-center">
              <Switch
                id={id}
                aria-describedby={describedBy}
                checked={values[key] === true}
                onCheckedChange={(c) => set(key, c)}
              />
            </div>
          );
        } else if (t === 'integer' || t === 'number') {
          control = (
            <Input
              id={id}
              type="number"
              inputMode={t === 'integer' ? 'numeric' : 'decimal'}
              step={t === 'integer' ? 1 : 'any'}
              min={p.minimum}
              max={p.maximum}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              value={typeof values[key] === 'number' ? String(values[key]) : ''}
              onChange={(e) => set(key, e.target.value === '' ? undefined : Number(e.target.value))}
            />
          );
        } else if (t === 'string') {
          control = (
            <Input
              id={id}
              className="font-mono"
              aria-describedby={describedBy}
              aria-invalid={invalid}
              maxLength={p.maxLength}
              value={typeof values[key] === 'string' ? (values[key] as string) : ''}
              onChange={(e) => set(key, e.target.value)}
              spellCheck={false}
              autoComplete="off"
            />
          );
        } else {
          control = (
            <Textarea
              id={id}
              className="font-mono text-xs"
              aria-describedby={describedBy}
              aria-invalid={invalid}
              defaultValue={values[key] === undefined ? '' : JSON.stringify(values[key], null, 2)}
              onChange={(e) => {
                try {
                  set(key, e.target.value === '' ? undefined : JSON.parse(e.target.value));
                } catch {
                  /* keep the last valid value until the JSON parses */
                }
              }}
            />
          );
        }
        const range =
          (t === 'integer' || t === 'number') && (p.minimum !== undefined || p.maximum !== undefined)
            ? ` (${p.minimum ?? '…'}–${p.maximum ?? '…'})`
            : '';
        return (
          <Field
            key={key}
            id={id}
            label={label}
            hint={p.description ? `${p.description}${range}` : range || undefined}
            error={errors[key]}
          >
            {control}
          </Field>
        );
      })}
    </div>
  );
}
