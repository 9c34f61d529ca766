import { z } from 'zod';

/** Bumped on any incompatible change to a message; every handshake carries it. */
export const PROTOCOL_VERSION = 1 as const;

/**
 * Hard ceiling for one socket message. The server sets socket.io's `maxHttpBufferSize` to this and every
 * handler also checks the serialised size, so an oversized payload is refused with a typed error instead of
 * silently cutting the connection.
 */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;
/** Largest piece of user code accepted anywhere (custom code or a library script source). */
export const MAX_CODE_BYTES = 256 * 1024;
/** Largest JSON parameter object. */
export const MAX_PARAMS_BYTES = 64 * 1024;
/** Default cap of captured output per execution (the engine cuts with a visible marker). */
export const DEFAULT_OUTPUT_CAP_BYTES = 1024 * 1024;

export const ErrorBody = z.object({
  code: z.string().min(1),
  message: z.string(),
  details: z.unknown().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** The one error shape that crosses every boundary (HTTP bodies, socket acks). */
export const Failure = z.object({ ok: z.literal(false), error: ErrorBody });
export type Failure = z.infer<typeof Failure>;

export type Result<T> = ({ ok: true } & T) | Failure;

export function fail(code: string, message: string, details?: unknown): Failure {
  return details === undefined
    ? { ok: false, error: { code, message } }
    : { ok: false, error: { code, message, details } };
}

/** A JSON value, validated structurally (no functions, no undefined, finite numbers). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export const Json: z.ZodType<Json> = z.lazy(() =>
  z.union([
    z.string(),
    z.number().refine(Number.isFinite, 'numbers must be finite'),
    z.boolean(),
    z.null(),
    z.array(Json),
    z.record(z.string(), Json),
  ]),
);

export const JsonObject = z.record(z.string(), Json);
export type JsonObject = z.infer<typeof JsonObject>;

/** UTF-8 byte length of a string: every size limit on text is counted in bytes, never in UTF-16 units. */
export function utf8Bytes(s: string): number {
  return new TextEncoder().encode(s).byteLength;
}

/** A string of at most `max` UTF-8 bytes; the message names the limit in bytes. */
export function boundedText(max: number) {
  return z.string().refine((s) => s.length <= max && utf8Bytes(s) <= max, {
    message: `at most ${max} bytes of UTF-8`,
  });
}

/** Byte length of a value once serialised as JSON (what actually travels). */
export function jsonBytes(value: unknown): number {
  return new TextEncoder().encode(JSON.stringify(value) ?? '').byteLength;
}

export const Id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'ids are [A-Za-z0-9_-]');
export const IsoTime = z.iso.datetime({ offset: true });
export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex SHA-256');
export const Base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64');

/** Host labels, e.g. env=prod. Keys and values are short, printable and never contain '=' or ','. */
export const LabelKey = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?$/, 'label keys are lowercase [a-z0-9._/-]');
export const LabelValue = z
  .string()
  .max(63)
  .regex(/^[A-Za-z0-9._-]*$/, 'label values are [A-Za-z0-9._-]');
export const Labels = z.record(LabelKey, LabelValue).refine((l) => Object.keys(l).length <= 32, {
  message: 'at most 32 labels',
});
export type Labels = z.infer<typeof Labels>;
