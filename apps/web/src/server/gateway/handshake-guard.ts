/**
 * What an unauthenticated `/agents` handshake may cost, per source address.
 *
 * Rate limit: a token bucket per source (an IPv4 address, or an IPv6 /64 — one host holds a whole /64). Every
 * handshake takes a token when it arrives; a connection that proves its key gives it back, so the bucket only
 * drains by handshakes that failed (bad schema, unknown or revoked agent, bad nonce or signature, no proof in
 * time) or are still unproven. An empty bucket refuses the handshake in the middleware, before any database
 * work, with RATE_LIMITED and the seconds to wait. A fleet that authenticates never drains its bucket, however
 * many agents share a NAT address; a flood drains only its own source's.
 *
 * Audit: failures are recorded per source and window, not per attempt. The first failure of a source opens its
 * window and is recorded at once (so a lone failure is visible immediately, naming the agent and the reason);
 * every further failure in the window — refusals by the rate limit included — is counted, and the window ends
 * with ONE aggregated event (count, first/last time, count per reason, a few agent ids). A flood of any size
 * from one source therefore writes at most two rows per window into the append-only table. Windows still open
 * at shutdown are written by `close()`.
 */
import { isIPv6 } from 'node:net';

export interface HandshakeGuardOptions {
  /** Bucket size: failed/unproven handshakes a source may have in a burst. */
  burst: number;
  /** Tokens added back per minute. */
  refillPerMinute: number;
  /** Length of an audit window, from a source's first failure. */
  windowMs: number;
  /** Sources tracked at once; beyond it the least recently seen are forgotten (their windows written first). */
  maxSources?: number;
}

/** The first failure of a window, recorded at once. */
export interface FirstFailure {
  source: string;
  ip: string | undefined;
  agentId: string | null;
  reason: string;
  at: Date;
}

/** The rest of a window, as one event. */
export interface FailureSummary {
  source: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
  /** Failures per reason (RATE_LIMITED: refused by the bucket without being looked at). */
  reasons: Record<string, number>;
  /** Distinct agent ids the failures named (at most MAX_AGENT_IDS). */
  agentIds: string[];
  windowSeconds: number;
}

export interface HandshakeGuardSink {
  first(f: FirstFailure): Promise<void>;
  summary(s: FailureSummary): Promise<void>;
}

const MAX_AGENT_IDS = 5;

interface Window {
  startedAt: number;
  count: number;
  firstAt: number;
  lastAt: number;
  reasons: Map<string, number>;
  agentIds: Set<string>;
  timer: NodeJS.Timeout;
}

interface SourceState {
  tokens: number;
  refilledAt: number;
  window: Window | null;
}

/** The key a source is limited by: the IPv4 address, or the /64 of an IPv6 one. */
export function sourceKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const addr = ip.replace(/^::ffff:/, '');
  if (!isIPv6(addr)) return addr;
  // Expand `::` to get the first four groups.
  const [head = '', tail = ''] = addr.split('::');
  const h = head ? head.split(':') : [];
  const t = addr.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export class HandshakeGuard {
  private readonly sources = new Map<string, SourceState>();
  private readonly maxSources: number;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly opts: HandshakeGuardOptions,
    private readonly sink: HandshakeGuardSink,
    private readonly onError: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.maxSources = opts.maxSources ?? 10_000;
  }

  private state(source: string): SourceState {
    const t = this.now();
    let s = this.sources.get(source);
    if (s) {
      // Most recently seen last, so the first entry is the one to forget.
      this.sources.delete(source);
    } else {
      s = { tokens: this.opts.burst, refilledAt: t, window: null };
      if (this.sources.size >= this.maxSources) {
        const [oldKey, old] = this.sources.entries().next().value as [string, SourceState];
        this.endWindow(oldKey, old);
        this.sources.delete(oldKey);
      }
    }
    this.sources.set(source, s);
    const refill = ((t - s.refilledAt) / 60_000) * this.opts.refillPerMinute;
    s.tokens = Math.min(this.opts.burst, s.tokens + refill);
    s.refilledAt = t;
    return s;
  }

  /**
   * A handshake arrives: takes a token, or says how many seconds until one is back. A refusal counts as a
   * failure (RATE_LIMITED) in the source's window.
   */
  admit(ip: string | undefined): { ok: true; source: string } | { ok: false; retryAfterSeconds: number } {
    const source = sourceKey(ip);
    const s = this.state(source);
    if (s.tokens >= 1) {
      s.tokens -= 1;
      return { ok: true, source };
    }
    void this.failed(source, ip, null, 'RATE_LIMITED');
    const retryAfterSeconds = Math.max(1, Math.ceil(((1 - s.tokens) * 60) / this.opts.refillPerMinute));
    return { ok: false, retryAfterSeconds };
  }

  /** The handshake proved its key: its token goes back. */
  succeeded(source: string): void {
    const s = this.sources.get(source);
    if (s) s.tokens = Math.min(this.opts.burst, s.tokens + 1);
  }

  /**
   * A handshake failed (its token stays spent); recorded in the source's window. Resolves once the window's
   * first failure is written (at once for the others), so a refusal can be answered after its record.
   */
  failed(source: string, ip: string | undefined, agentId: string | null, reason: string): Promise<void> {
    const s = this.sources.get(source) ?? this.state(source);
    const t = this.now();
    if (!s.window) {
      const timer = setTimeout(() => this.endWindow(source, s), this.opts.windowMs);
      timer.unref();
      s.window = {
        startedAt: t,
        count: 0,
        firstAt: t,
        lastAt: t,
        reasons: new Map(),
        agentIds: new Set(),
        timer,
      };
      return this.write(this.sink.first({ source, ip, agentId, reason, at: new Date(t) }));
    }
    const w = s.window;
    if (w.count === 0) w.firstAt = t;
    w.count += 1;
    w.lastAt = t;
    w.reasons.set(reason, (w.reasons.get(reason) ?? 0) + 1);
    if (agentId && w.agentIds.size < MAX_AGENT_IDS) w.agentIds.add(agentId);
    return Promise.resolve();
  }

  private endWindow(source: string, s: SourceState): void {
    const w = s.window;
    if (!w) return;
    clearTimeout(w.timer);
    s.window = null;
    if (w.count === 0) return;
    void this.write(
      this.sink.summary({
        source,
        count: w.count,
        firstAt: new Date(w.firstAt),
        lastAt: new Date(w.lastAt),
        reasons: Object.fromEntries(w.reasons),
        agentIds: [...w.agentIds],
        windowSeconds: Math.round(this.opts.windowMs / 1000),
      }),
    );
  }

  private write(p: Promise<void>): Promise<void> {
    const tracked: Promise<void> = p.catch(this.onError).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
    return tracked;
  }

  /** Writes every open window and waits for the writes (shutdown). */
  async close(): Promise<void> {
    for (const [source, s] of this.sources) this.endWindow(source, s);
    await Promise.all([...this.pending]);
  }
}
