/** A JSON POST over node:http(s), so a pinned CA can be used without extra dependencies. */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export async function postJson(
  url: string,
  body: unknown,
  opts: { ca?: string; timeoutMs?: number } = {},
): Promise<{ status: number; body: unknown }> {
  const u = new URL(url);
  const data = Buffer.from(JSON.stringify(body), 'utf8');
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = req(
      u,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': data.length,
          accept: 'application/json',
        },
        ...(opts.ca ? { ca: opts.ca } : {}),
        timeout: opts.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON: return the text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    r.on('timeout', () =>
      r.destroy(new Error(`no answer from ${u.origin} within ${opts.timeoutMs ?? 15_000} ms`)),
    );
    r.on('error', reject);
    r.end(data);
  });
}
