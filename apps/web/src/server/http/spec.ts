/** The shape of a route contract (see api-spec.ts): used by the handler wrapper, OpenAPI and the role tests. */
import type { z } from 'zod';

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface RouteSpec {
  method: Method;
  /** OpenAPI-style path, e.g. /api/requests/{id}. */
  path: string;
  summary: string;
  tag: string;
  /** 'public': no session; 'session': any signed-in user; { action }: the role must be allowed it. */
  auth: 'public' | 'session' | { action: string };
  /** For public routes that still want to know who is calling. */
  optionalSession?: boolean;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  response?: z.ZodType;
  status?: number;
  maxBodyBytes?: number;
  /** Streams a non-JSON body (export). */
  produces?: string;
}

export const defineRoute = <S extends RouteSpec>(spec: S): S => spec;
