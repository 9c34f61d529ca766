/** Reads a request body with a hard byte cap, without trusting Content-Length alone. */
export class BodyTooLarge extends Error {}

/**
 * Past the limit the rest is read and discarded (up to DISCARD_CAP) so the client, still sending, gets the
 * 413 instead of a connection reset; beyond that the stream is cancelled.
 */
const DISCARD_CAP = 32 * 1024 * 1024;

export async function readBodyText(req: Request, limit: number): Promise<string> {
  if (!req.body) return '';
  const declared = Number(req.headers.get('content-length') ?? 'NaN');
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  let tooLarge = Number.isFinite(declared) && declared > limit;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) tooLarge = true;
    if (tooLarge) {
      if (total > DISCARD_CAP) {
        await reader.cancel().catch(() => undefined);
        break;
      }
      continue;
    }
    chunks.push(value);
  }
  if (tooLarge) throw new BodyTooLarge();
  return Buffer.concat(chunks).toString('utf8');
}
