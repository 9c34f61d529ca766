/** OpenAPI 3.1 document generated from the route table (zod 4's JSON Schema output is 2020-12, as 3.1 wants). */
import { z } from 'zod';
import { routes, type RouteSpec } from '@pyreach/protocol/routes';

type JsonSchema = { properties?: Record<string, unknown>; required?: string[] } & Record<string, unknown>;

const toSchema = (s: z.ZodType): JsonSchema => {
  const out = z.toJSONSchema(s, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-2020-12',
  }) as JsonSchema;
  delete out.$schema;
  return out;
};

const ErrorSchema = {
  type: 'object',
  required: ['ok', 'error'],
  properties: {
    ok: { const: false },
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
};

function parameters(spec: RouteSpec) {
  const out: unknown[] = [];
  for (const [where, schema] of [
    ['path', spec.params],
    ['query', spec.query],
  ] as const) {
    if (!schema) continue;
    const js = toSchema(schema);
    for (const [name, s] of Object.entries(js.properties ?? {})) {
      out.push({
        name,
        in: where,
        required: where === 'path' || (js.required ?? []).includes(name),
        schema: s,
      });
    }
  }
  return out;
}

export function buildOpenApi(serverUrl: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [operationId, spec] of Object.entries(routes) as [string, RouteSpec][]) {
    const op: Record<string, unknown> = {
      operationId,
      summary: spec.summary,
      tags: [spec.tag],
      parameters: parameters(spec),
      security: spec.auth === 'public' ? [] : [{ session: [] }],
      ...(typeof spec.auth === 'object' ? { 'x-pyreach-action': spec.auth.action } : {}),
      responses: {
        [String(spec.status ?? 200)]: {
          description: 'success',
          content: spec.produces
            ? { [spec.produces]: {}, 'text/csv': {} }
            : {
                'application/json': {
                  schema: spec.response
                    ? toSchema(spec.response)
                    : { type: 'object', properties: { ok: { const: true } } },
                },
              },
        },
        default: {
          description:
            'error (400 VALIDATION, 401, 403 FORBIDDEN, 404, 409, 413 PAYLOAD_TOO_LARGE, 429, 500)',
          content: { 'application/json': { schema: ErrorSchema } },
        },
      },
    };
    if (spec.body)
      op.requestBody = { required: true, content: { 'application/json': { schema: toSchema(spec.body) } } };
    (paths[spec.path] ??= {})[spec.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Pyreach control plane API',
      version: '1',
      description:
        'Governed remote execution into live CPython processes. Sign in with POST /api/auth/sign-in/email {email,password}; the session cookie authenticates every other call. Errors are { ok:false, error:{code,message} }.',
    },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: { session: { type: 'apiKey', in: 'cookie', name: 'pyreach.session_token' } },
    },
    paths,
  };
}
