/**
 * A Kubernetes API server for pods, as far as the agent's pod watch uses it — started by tests because no
 * cluster can run on these machines (no container runtime, no kubelet; a real API server cannot be used).
 * It speaks the real protocol over HTTPS with a bearer token:
 *  - GET /api/v1/pods?fieldSelector=spec.nodeName=N&limit=L[&continue=C]   a PodList page (metadata.continue)
 *  - GET /api/v1/pods?watch=1&resourceVersion=R&allowWatchBookmarks=true&timeoutSeconds=T&fieldSelector=...
 *    a chunked stream of `{"type":..., "object":...}` lines: ADDED / MODIFIED / DELETED after R, then live;
 *    BOOKMARK on request; for R older than the compaction point an ERROR event with a 410 Status (what
 *    kube-apiserver sends for "too old resource version"), or an HTTP 410 when `goneAsHttp` is set.
 * Every request is recorded (path, query, authorization) so tests can check what the agent asked.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakePod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  };
  spec: { nodeName: string; containers: { name: string; image: string }[] };
  status: { phase: string; containerStatuses?: { name: string; containerID?: string; ready: boolean }[] };
}

export interface RecordedRequest {
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
}

interface Ev {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  pod: FakePod;
}

export function makePki(): { dir: string; caFile: string; key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-kube-pki-'));
  const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=test kube CA',
  ]);
  run(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  run([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  ]);
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    key: readFileSync(join(dir, 'server.key'), 'utf8'),
    cert: readFileSync(join(dir, 'server.pem'), 'utf8'),
  };
}

export function pod(
  name: string,
  opts: {
    namespace?: string;
    uid: string;
    node: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    owner?: { kind: string; name: string };
    containers?: { name: string; id?: string; runtime?: string }[];
  },
): FakePod {
  const containers = opts.containers ?? [{ name: 'app' }];
  return {
    metadata: {
      name,
      namespace: opts.namespace ?? 'default',
      uid: opts.uid,
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
      ...(opts.owner
        ? {
            ownerReferences: [
              {
                apiVersion: 'apps/v1',
                kind: opts.owner.kind,
                name: opts.owner.name,
                uid: 'o-' + name,
                controller: true,
              },
            ],
          }
        : {}),
    },
    spec: {
      nodeName: opts.node,
      containers: containers.map((c) => ({ name: c.name, image: 'example/app:1.0' })),
    },
    status: {
      phase: 'Running',
      containerStatuses: containers.map((c) => ({
        name: c.name,
        ready: true,
        ...(c.id ? { containerID: `${c.runtime ?? 'containerd'}://${c.id}` } : {}),
      })),
    },
  };
}

export class FakeKubeApi {
  readonly pki = makePki();
  readonly tokenFile: string;
  token = 'test-sa-token-1';
  readonly requests: RecordedRequest[] = [];
  /** Answer every request with this HTTP status instead (an outage, a missing RBAC grant). */
  failWith: number | null = null;
  /** Answer a too-old watch with HTTP 410 instead of a 200 stream carrying an ERROR event. */
  goneAsHttp = false;
  private pods = new Map<string, FakePod>();
  private events: Ev[] = [];
  private rv = 100;
  /** Watches from a resourceVersion below this get 410 Gone. */
  compactedBelow = 0;
  private watchers = new Set<{ node: string; res: ServerResponse; from: number }>();
  private server: Server | null = null;
  port = 0;

  constructor() {
    this.tokenFile = join(this.pki.dir, 'token');
    writeFileSync(this.tokenFile, `${this.token}\n`);
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Rotate the ServiceAccount token (the file the agent reads and what the server accepts). */
  rotateToken(next: string): void {
    this.token = next;
    writeFileSync(this.tokenFile, `${next}\n`);
  }

  private record(type: Ev['type'], p: FakePod): void {
    this.rv++;
    const stored: FakePod = structuredClone(p);
    stored.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.pods.delete(p.metadata.uid);
    else this.pods.set(p.metadata.uid, stored);
    const ev: Ev = { rv: this.rv, type, pod: stored };
    this.events.push(ev);
    for (const w of this.watchers)
      if (stored.spec.nodeName === w.node) w.res.write(JSON.stringify({ type, object: stored }) + '\n');
  }

  add(p: FakePod): void {
    this.record('ADDED', p);
  }
  modify(p: FakePod): void {
    this.record('MODIFIED', p);
  }
  remove(uid: string): void {
    const p = this.pods.get(uid);
    if (p) this.record('DELETED', p);
  }

  /** Send a BOOKMARK at the current resourceVersion to every open watch. */
  bookmark(): void {
    this.rv++;
    for (const w of this.watchers)
      w.res.write(
        JSON.stringify({
          type: 'BOOKMARK',
          object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } },
        }) + '\n',
      );
  }

  /** Forget history: watches from older versions now get 410. */
  compact(): void {
    this.compactedBelow = this.rv;
    this.events = [];
  }

  /** Send a 410 ERROR event on every open watch, then end them (the API server's "too old" answer). */
  expireWatches(): void {
    for (const w of this.watchers) {
      w.res.end(JSON.stringify({ type: 'ERROR', object: gone() }) + '\n');
    }
    this.watchers.clear();
  }

  /** End every open watch normally (its timeoutSeconds ran out). */
  endWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  async start(port = 0): Promise<void> {
    this.server = createServer({ key: this.pki.key, cert: this.pki.cert }, (req, res) =>
      this.handle(req, res),
    );
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server?.closeAllConnections();
    this.server = null;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://x');
    this.requests.push({
      path: url.pathname,
      query: url.searchParams,
      authorization: req.headers.authorization,
    });
    const status = (code: number, reason: string, message: string): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message }));
    };
    if (this.failWith)
      return status(this.failWith, this.failWith === 403 ? 'Forbidden' : 'InternalError', 'injected');
    if (req.headers.authorization !== `Bearer ${this.token}`)
      return status(401, 'Unauthorized', 'Unauthorized');
    if (url.pathname !== '/api/v1/pods') return status(404, 'NotFound', 'not found');
    const m = /^spec\.nodeName=(.+)$/.exec(url.searchParams.get('fieldSelector') ?? '');
    if (!m) return status(400, 'BadRequest', 'this test server only serves node-scoped pod requests');
    const node = m[1]!;
    if (url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true') {
      const from = Number(url.searchParams.get('resourceVersion') || this.rv);
      if (from < this.compactedBelow) {
        if (this.goneAsHttp)
          return status(410, 'Expired', `too old resource version: ${from} (${this.compactedBelow})`);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'ERROR', object: gone(from, this.compactedBelow) }) + '\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      for (const ev of this.events)
        if (ev.rv > from && ev.pod.spec.nodeName === node)
          res.write(JSON.stringify({ type: ev.type, object: ev.pod }) + '\n');
      const w = { node, res, from };
      this.watchers.add(w);
      const t = Number(url.searchParams.get('timeoutSeconds') ?? 0);
      const timer = t > 0 ? setTimeout(() => (this.watchers.delete(w), res.end()), t * 1000) : null;
      res.on('close', () => {
        if (timer) clearTimeout(timer);
        this.watchers.delete(w);
      });
      return;
    }
    const all = [...this.pods.values()].filter((p) => p.spec.nodeName === node);
    const limit = Number(url.searchParams.get('limit') ?? 0) || all.length;
    const start = Number(url.searchParams.get('continue') ?? 0);
    const page = all.slice(start, start + limit);
    const next = start + limit < all.length ? String(start + limit) : undefined;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: 'PodList',
        apiVersion: 'v1',
        metadata: { resourceVersion: String(this.rv), ...(next ? { continue: next } : {}) },
        items: page,
      }),
    );
  }
}

function gone(from?: number, compacted?: number): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    message: `too old resource version: ${from ?? '?'} (${compacted ?? '?'})`,
    reason: 'Expired',
    code: 410,
  };
}
