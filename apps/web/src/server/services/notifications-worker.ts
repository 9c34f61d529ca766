/**
 * The outbox worker: started by the composition root (../control-plane.ts) on every replica. It runs one pass
 * (claim due deliveries with a lease, send, record) and, when a pass found nothing, waits `intervalMs` before
 * the next; a pass that found work runs again at once. Replicas share the work through the lease
 * (FOR UPDATE SKIP LOCKED), so running several is safe. Stop waits for the pass in flight.
 */
export interface NotificationWorkerPorts {
  /** One pass; how many deliveries it handled. */
  pass(): Promise<{ handled: number }>;
  intervalMs: number;
  /** Registers work the graceful shutdown waits for. */
  track<T>(work: Promise<T>): Promise<T>;
  onError(err: unknown): void;
}

export class NotificationWorker {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;

  constructor(private readonly ports: NotificationWorkerPorts) {}

  start(): void {
    if (this.ports.intervalMs <= 0 || !this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.ports.track(
        this.ports.pass().then(
          (r) => this.schedule(r.handled > 0 ? 0 : this.ports.intervalMs),
          (err: unknown) => {
            this.ports.onError(err);
            this.schedule(this.ports.intervalMs);
          },
        ),
      );
    }, ms);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }
}
