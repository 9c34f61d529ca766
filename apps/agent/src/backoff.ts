/**
 * Reconnect delays: exponential with full jitter (delay = random in [0, min(max, min * 2^attempt)]), floored at
 * `minMs / 2` so a flapping link cannot spin. A control-plane restart then spreads a fleet's reconnects over the
 * whole window instead of bringing every agent back in the same second.
 */
export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  /** Injectable for tests; returns [0, 1). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
  }

  /** The ceiling of the window for the current attempt (before jitter). */
  ceiling(attempt = this.attempt): number {
    // 2^attempt overflows to Infinity harmlessly; min() brings it back to maxMs.
    return Math.min(this.opts.maxMs, this.opts.minMs * 2 ** attempt);
  }

  /** Delay before the next attempt; advances the attempt counter. */
  next(): number {
    const cap = this.ceiling();
    this.attempt++;
    const floor = Math.min(this.opts.minMs / 2, cap);
    return Math.round(floor + this.random() * (cap - floor));
  }

  /** After a successful connection and authentication. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
