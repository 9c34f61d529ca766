/**
 * Collects work items that arrive while a batch is being applied and applies them together, one batch at a time,
 * in arrival order (issue 15: agent reports). An item that arrives while nothing runs starts a batch at the next
 * turn of the event loop (so the items of one socket read share it) — no timer, so a lone report waits for
 * nobody. Each caller's promise settles with its own item's verdict, after the batch it was in has been applied.
 */
export class Batcher<T, R> {
  private readonly waiting: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private running = false;

  /**
   * `apply` returns one verdict per item, in order; a throw rejects the whole batch's callers (their items were
   * not applied). At most `maxBatch` items per batch.
   */
  constructor(
    private readonly apply: (
      items: T[],
    ) => Promise<({ ok: true; value: R } | { ok: false; error: unknown })[]>,
    private readonly maxBatch: number,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  /** Items waiting for a batch (not counting the one being applied). */
  get depth(): number {
    return this.waiting.length;
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.length) {
        const batch = this.waiting.splice(0, this.maxBatch);
        try {
          const verdicts = await this.apply(batch.map((b) => b.item));
          batch.forEach((b, i) => {
            const v = verdicts[i];
            if (!v) b.reject(new Error('the batch returned no verdict for this item'));
            else if (v.ok) b.resolve(v.value);
            else b.reject(v.error);
          });
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
