/**
 * A small Kubernetes API client for the one thing the agent asks: list and watch pods. Written over
 * node:https instead of using @kubernetes/client-node, measured here: client-node 1.4 (the last line that
 * runs on Node 20; 2.x needs undici 8, i.e. Node >= 22.19) installs 74 packages (83 MB); an esbuild bundle
 * of just its KubeConfig + CoreV1Api + Watch is 4.3 MB — over three times the whole agent's bundle (1.3 MB)
 * — and merely loading it adds 25 MB of resident memory (the agent's budget is < 80 MB); it also reads
 * process.env itself for in-cluster config. What the agent needs is two GETs, bearer-token auth, a pinned
 * CA and a line-delimited JSON stream.
 *
 * In-cluster credentials are the ServiceAccount's projected token and CA (the kubelet rotates the token
 * file, so it is re-read for every request) and the API server's address from the environment kubelet sets
 * (KUBERNETES_SERVICE_HOST/PORT, read by the agent's env module, never here).
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export const IN_CLUSTER_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';
export const IN_CLUSTER_CA_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';

export interface KubeApiOptions {
  /** https://host:port of the API server (http only for tests). */
  server: string;
  /** Bearer token file, re-read on every request (bound ServiceAccount tokens rotate). */
  tokenFile: string;
  /** PEM CA bundle the API server's certificate must chain to; null = the system store. */
  caFile: string | null;
  /** Per request: connect + first byte. Watches have no overall deadline (the server ends them). */
  timeoutMs?: number;
  /** Largest list response accepted (pods of one node, one page). */
  maxBodyBytes?: number;
  /** Largest single watch event line. */
  maxLineBytes?: number;
}

/** An HTTP error from the API server, with the `Status` object's reason when it sent one. */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    readonly status: number,
    readonly reason: string | null,
    message: string,
  ) {
    super(message);
  }
  /** 410 Gone / reason Expired: the resourceVersion is too old; list again. */
  get gone(): boolean {
    return this.status === 410 || this.reason === 'Expired' || this.reason === 'Gone';
  }
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: unknown;
}

const DEFAULTS = { timeoutMs: 15_000, maxBodyBytes: 32 * 1024 * 1024, maxLineBytes: 4 * 1024 * 1024 };

function statusError(status: number, body: string): KubeApiError {
  let reason: string | null = null;
  let message = body.slice(0, 300);
  try {
    const s = JSON.parse(body) as { kind?: string; reason?: string; message?: string };
    if (s.kind === 'Status') {
      reason = typeof s.reason === 'string' ? s.reason : null;
      message = typeof s.message === 'string' ? s.message.slice(0, 300) : message;
    }
  } catch {
    /* not a Status object */
  }
  return new KubeApiError(status, reason, `HTTP ${status}${reason ? ` ${reason}` : ''}: ${message}`);
}

export class KubeApi {
  private readonly o: Required<Omit<KubeApiOptions, 'caFile'>> & { caFile: string | null };
  private readonly url: URL;

  constructor(opts: KubeApiOptions) {
    this.o = { ...DEFAULTS, ...opts };
    this.url = new URL(opts.server);
    if (this.url.protocol !== 'https:' && this.url.protocol !== 'http:')
      throw new Error(`Kubernetes API server must be an https URL, got ${opts.server}`);
  }

  get server(): string {
    return this.url.origin;
  }

  private open(path: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const token = readFileSync(this.o.tokenFile, 'utf8').trim();
    const ca = this.o.caFile ? readFileSync(this.o.caFile, 'utf8') : undefined;
    const target = new URL(path, this.url);
    return new Promise((resolve, reject) => {
      const req = (target.protocol === 'https:' ? httpsRequest : httpRequest)(
        target,
        {
          method: 'GET',
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
          ...(ca ? { ca } : {}),
          ...(signal ? { signal } : {}),
        },
        (res) => {
          clearTimeout(timer);
          resolve(res);
        },
      );
      const timer = setTimeout(
        () => req.destroy(new Error(`no answer from ${target.origin} within ${this.o.timeoutMs} ms`)),
        this.o.timeoutMs,
      );
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end();
    });
  }

  private static async readAll(res: IncomingMessage, max: number): Promise<string> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > max) {
        res.destroy();
        throw new Error(`response larger than ${max} bytes`);
      }
      chunks.push(c);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** GET a JSON object. */
  async get(path: string, signal?: AbortSignal): Promise<unknown> {
    const res = await this.open(path, signal);
    const body = await KubeApi.readAll(res, this.o.maxBodyBytes);
    if (res.statusCode !== 200) throw statusError(res.statusCode ?? 0, body);
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new Error(`the API server's answer to ${path.split('?')[0]} is not JSON`);
    }
  }

  /**
   * GET a watch stream and call `onEvent` for each event line, in order. Resolves when the server ends the
   * stream (its timeoutSeconds) or `signal` aborts; rejects on HTTP errors, broken or oversized lines.
   */
  async watch(path: string, onEvent: (ev: WatchEvent) => void, signal?: AbortSignal): Promise<void> {
    const res = await this.open(path, signal);
    if (res.statusCode !== 200) throw statusError(res.statusCode ?? 0, await KubeApi.readAll(res, 65_536));
    let buf = '';
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) onEvent(parseEvent(line));
        }
        if (buf.length > this.o.maxLineBytes) {
          res.destroy();
          throw new Error(`a watch event is larger than ${this.o.maxLineBytes} bytes`);
        }
      }
      if (buf.trim()) onEvent(parseEvent(buf.trim()));
    } catch (e) {
      if (signal?.aborted) return;
      throw e;
    } finally {
      // An event the caller refused (or a broken line) ends this stream; never leave the socket open.
      if (!res.complete) res.destroy();
    }
  }
}

function parseEvent(line: string): WatchEvent {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch {
    throw new Error('a watch event line is not JSON');
  }
  const e = ev as { type?: unknown; object?: unknown };
  if (
    typeof e !== 'object' ||
    e === null ||
    !['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'].includes(e.type as string)
  )
    throw new Error('a watch event has no known type');
  return { type: e.type as WatchEvent['type'], object: e.object };
}
