/**
 * Serves src/app/api/** /route.ts without Next.js, with Next's conventions ([param], [...rest], exported
 * method handlers receiving { params: Promise<...> }). Used when the server runs API-only (tests, or no
 * `next build` output), so the very same route modules answer in both modes.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

type Handler = (
  req: Request,
  ctx: { params: Promise<Record<string, string | string[]>> },
) => Promise<Response> | Response;

interface Entry {
  segments: string[];
  file: string;
  module?: Promise<Record<string, unknown>>;
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name === 'route.ts') out.push(p);
  }
  return out;
}

function specificity(segments: string[]): number[] {
  return segments.map((s) => (s.startsWith('[...') ? 2 : s.startsWith('[') ? 1 : 0));
}

export class FsRouter {
  private readonly entries: Entry[];

  constructor(private readonly appDir: string) {
    this.entries = walk(path.join(appDir, 'api'))
      .map((file) => ({ file, segments: path.relative(appDir, path.dirname(file)).split(path.sep) }))
      // Static segments win over [param], which wins over [...rest] (as in Next).
      .sort((a, b) => {
        const sa = specificity(a.segments);
        const sb = specificity(b.segments);
        for (let i = 0; i < Math.max(sa.length, sb.length); i++) {
          const d = (sa[i] ?? -1) - (sb[i] ?? -1);
          if (d !== 0) return d;
        }
        return 0;
      });
  }

  private match(pathname: string): { entry: Entry; params: Record<string, string | string[]> } | null {
    const parts = pathname
      .split('/')
      .filter(Boolean)
      .map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          return p;
        }
      });
    for (const entry of this.entries) {
      const params: Record<string, string | string[]> = {};
      let ok = true;
      let i = 0;
      for (; i < entry.segments.length; i++) {
        const seg = entry.segments[i]!;
        if (seg.startsWith('[...')) {
          const rest = parts.slice(i);
          if (rest.length === 0) ok = false;
          params[seg.slice(4, -1)] = rest;
          i = parts.length;
          break;
        }
        const part = parts[i];
        if (part === undefined) {
          ok = false;
          break;
        }
        if (seg.startsWith('[')) params[seg.slice(1, -1)] = part;
        else if (seg !== part) {
          ok = false;
          break;
        }
      }
      if (ok && i === parts.length) return { entry, params };
    }
    return null;
  }

  async handle(req: Request): Promise<Response | null> {
    const url = new URL(req.url);
    const m = this.match(url.pathname);
    if (!m) return null;
    m.entry.module ??= import(pathToFileURL(m.entry.file).href) as Promise<Record<string, unknown>>;
    const mod = await m.entry.module;
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = mod[method] as Handler | undefined;
    if (typeof handler !== 'function') {
      const allowed = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((k) => typeof mod[k] === 'function');
      return Response.json(
        { ok: false, error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} is not allowed here` } },
        { status: 405, headers: { allow: allowed.join(', ') } },
      );
    }
    return handler(req, { params: Promise.resolve(m.params) });
  }

  /** Loads every route module up front so the first requests are not slowed (and import errors surface at boot). */
  async preload(): Promise<void> {
    for (const e of this.entries) {
      e.module ??= import(pathToFileURL(e.file).href) as Promise<Record<string, unknown>>;
      await e.module;
    }
  }
}
