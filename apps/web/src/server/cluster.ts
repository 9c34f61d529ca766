/**
 * Several control-plane replicas behind one load balancer. With `REDIS_URL` set:
 *  - socket.io's Redis adapter carries room broadcasts (/ui pushes, agent revocation and cancel) to every
 *    replica, so a browser on any replica sees every change;
 *  - dispatcher wake-ups (approval, cancel, a finished job freeing a rollout slot) are sent to the other
 *    replicas with `serverSideEmit`, because each replica only dispatches to the agents connected to it;
 *  - a leader lease (a Redis key set with NX and a TTL, renewed by its holder, released on shutdown) decides
 *    which single replica runs housekeeping; when the holder dies the key expires and another replica takes it.
 * Without Redis there is one replica: it is always the leader and nothing is broadcast.
 */
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import type { Server as IoServer } from 'socket.io';
import type { Env } from './env';
import type { Logger } from './logger';

const WAKE_EVENT = 'pyreach:dispatch-wake';

// Compare-and-extend / compare-and-delete: only the holder may renew or release the lease.
const RENEW =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

const redisClient = (url: string) => createClient({ url });
type RedisClient = ReturnType<typeof redisClient>;

export interface LeaderState {
  leader: boolean;
  replicaId: string;
  /** When this replica last acquired the lease (null: not leader). */
  since: string | null;
  /** How many times this replica acquired the lease since start. */
  acquisitions: number;
  /** Housekeeping passes run by this replica since start. */
  housekeepingRuns: number;
}

/** Whether Redis answers (readiness); `configured: false` when this deployment runs without it. */
export type RedisReadiness =
  | { configured: false; ok: true }
  | { configured: true; ok: true; latencyMs: number }
  | { configured: true; ok: false; error: string };

export class Cluster {
  private leader = false;
  private since: Date | null = null;
  private acquisitions = 0;
  private housekeepingRuns = 0;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;

  private constructor(
    private readonly env: Env,
    private readonly io: IoServer,
    private readonly log: Logger,
    private readonly redis: { pub: RedisClient; sub: RedisClient } | null,
  ) {}

  /** Connects to Redis when configured and installs the adapter; call before the namespaces see traffic. */
  static async start(env: Env, io: IoServer, log: Logger): Promise<Cluster> {
    if (!env.redisUrl) {
      const c = new Cluster(env, io, log, null);
      c.leader = true;
      c.since = new Date();
      c.acquisitions = 1;
      return c;
    }
    const pub = redisClient(env.redisUrl);
    const sub = pub.duplicate();
    // An unhandled 'error' event would kill the process; the client reconnects by itself.
    for (const [name, client] of [
      ['pub', pub],
      ['sub', sub],
    ] as const)
      client.on('error', (err: unknown) => log.warn({ err, client: name }, 'redis connection error'));
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: `${env.redisPrefix}:socket.io` }));
    const c = new Cluster(env, io, log, { pub, sub });
    log.info(
      { replicaId: env.replicaId, prefix: env.redisPrefix },
      'redis adapter enabled (multi-replica mode)',
    );
    return c;
  }

  get multiReplica(): boolean {
    return this.redis !== null;
  }

  private get leaseKey(): string {
    return `${this.env.redisPrefix}:leader`;
  }

  /** Starts renewing/acquiring the lease; `onWake` is called for wake-ups sent by other replicas. */
  async begin(onWake: (why: string) => void): Promise<void> {
    if (!this.redis) return;
    this.io.of('/agents').on(WAKE_EVENT, (why: unknown) => {
      const reason = `remote:${typeof why === 'string' ? why.slice(0, 32) : '?'}`;
      this.log.debug({ why: reason }, 'dispatch wake from another replica');
      onWake(reason);
    });
    await this.tick();
    this.timer = setInterval(() => void this.tick(), Math.max(100, Math.floor(this.env.leaderLeaseMs / 3)));
    this.timer.unref();
  }

  /** Whether this replica may run cluster-wide background work now. */
  isLeader(): boolean {
    return this.leader;
  }

  state(): LeaderState {
    return {
      leader: this.leader,
      replicaId: this.env.replicaId,
      since: this.since?.toISOString() ?? null,
      acquisitions: this.acquisitions,
      housekeepingRuns: this.housekeepingRuns,
    };
  }

  /**
   * Readiness of the Redis side: both connections up (the adapter's pub and sub) and PING answered within
   * `timeoutMs`. Without Redis configured there is nothing to check (`configured: false`). A replica whose
   * Redis is gone cannot broadcast /ui pushes or wake-ups to the others, nor know who leads: out of the load
   * balancer until it answers again (the client reconnects by itself).
   */
  async redisReady(timeoutMs: number): Promise<RedisReadiness> {
    if (!this.redis) return { configured: false, ok: true };
    const { pub, sub } = this.redis;
    const started = Date.now();
    if (!pub.isReady || !sub.isReady)
      return {
        configured: true,
        ok: false,
        error: `not connected (${[!pub.isReady && 'pub', !sub.isReady && 'sub'].filter(Boolean).join(', ')})`,
      };
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await Promise.race([
        pub.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no PING answer in ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      if (answer !== 'PONG') return { configured: true, ok: false, error: `PING answered ${String(answer)}` };
      return { configured: true, ok: true, latencyMs: Date.now() - started };
    } catch (err) {
      return { configured: true, ok: false, error: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  }

  countHousekeeping(): void {
    this.housekeepingRuns++;
  }

  /** Tells the other replicas to run a dispatch pass now (their own agents may have work). */
  broadcastWake(why: string): void {
    if (!this.redis) return;
    try {
      this.io.of('/agents').serverSideEmit(WAKE_EVENT, why);
    } catch (err) {
      this.log.warn({ err, why }, 'cross-replica wake failed; the others dispatch on their timer');
    }
  }

  private tick(): Promise<void> {
    this.ticking ??= this.renewOrAcquire().finally(() => (this.ticking = null));
    return this.ticking;
  }

  private async renewOrAcquire(): Promise<void> {
    if (!this.redis) return;
    const { pub } = this.redis;
    const ttl = String(this.env.leaderLeaseMs);
    try {
      if (this.leader) {
        const renewed = await pub.eval(RENEW, {
          keys: [this.leaseKey],
          arguments: [this.env.replicaId, ttl],
        });
        if (Number(renewed) !== 1) this.stepDown('lease lost to another replica');
        return;
      }
      const got = await pub.set(this.leaseKey, this.env.replicaId, {
        condition: 'NX',
        expiration: { type: 'PX', value: this.env.leaderLeaseMs },
      });
      if (got === 'OK') {
        this.leader = true;
        this.since = new Date();
        this.acquisitions++;
        this.log.info(
          { replicaId: this.env.replicaId, leaseMs: this.env.leaderLeaseMs },
          'leader lease acquired: this replica runs housekeeping',
        );
      }
    } catch (err) {
      // Without Redis we cannot know whether someone else holds the lease: stop leading until it answers.
      if (this.leader) this.stepDown('redis unreachable');
      this.log.warn({ err }, 'leader lease check failed');
    }
  }

  private stepDown(reason: string): void {
    this.leader = false;
    this.since = null;
    this.log.warn({ replicaId: this.env.replicaId, reason }, 'leader lease released');
  }

  /** Releases the lease (so another replica takes over at once) and closes the Redis connections. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (!this.redis) return;
    await this.ticking?.catch(() => undefined);
    if (this.leader) {
      await this.redis.pub
        .eval(RELEASE, { keys: [this.leaseKey], arguments: [this.env.replicaId] })
        .catch(() => undefined);
      this.stepDown('shutdown');
    }
    await Promise.all([
      this.redis.pub.close().catch(() => undefined),
      this.redis.sub.close().catch(() => undefined),
    ]);
  }
}
