/**
 * The one place the control plane reads process.env. Parsed once at boot with zod; every other module takes
 * the parsed `Env` (or options derived from it). Errors name the variable and say what to set.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', ''])
  .optional()
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

const onOff = z
  .enum(['on', 'off', '1', '0', 'true', 'false'], { message: 'use on or off' })
  .optional()
  .transform((v) => (v === undefined ? undefined : v === 'on' || v === '1' || v === 'true'));

const SsoRole = z.enum(['viewer', 'operator', 'approver', 'admin'], {
  message: 'role must be viewer, operator, approver or admin',
});

/**
 * `{"<claim>": {"<claim value>": "<role>"}}`, e.g. `{"groups": {"pyreach-admins": "admin", "sre": "operator"}}`.
 * A claim may be a string or a list of strings (groups); the highest role any value maps to wins.
 */
const RoleMap = z
  .string()
  .transform((v, ctx) => {
    try {
      return JSON.parse(v) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be JSON like {"groups":{"pyreach-admins":"admin"}}' });
      return z.NEVER;
    }
  })
  .pipe(
    z
      .record(
        z.string().regex(/^[A-Za-z0-9_:.\/-]{1,100}$/, 'claim names: letters, digits, _ : . / -'),
        z.record(z.string().min(1).max(256), SsoRole),
        { message: 'must be an object of claim name → {value: role}' },
      )
      .refine((m) => Object.keys(m).length > 0, 'names no claim'),
  )
  .optional();

const RawEnv = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    HOST: z.string().min(1).default('127.0.0.1'),
    PUBLIC_URL: z
      .url({ message: 'PUBLIC_URL must be an absolute URL such as https://pyreach.example.com' })
      .optional(),
    DATABASE_URL: z
      .string()
      .regex(
        /^postgres(ql)?:\/\//,
        'DATABASE_URL must be a postgres:// or postgresql:// URL (leave it unset for embedded PGlite)',
      )
      .optional(),
    /**
     * PostgreSQL URL of the role that owns the schema and runs migrations. When set, DATABASE_URL's role is
     * granted only INSERT and SELECT on the audit trail (packages/db roles.ts) and cannot rewrite it.
     */
    DATABASE_MIGRATION_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'DATABASE_MIGRATION_URL must be a postgres:// or postgresql:// URL')
      .optional(),
    PYREACH_DATA_DIR: z.string().min(1).default('./data'),
    PYREACH_SIGNING_KEY_FILE: z.string().min(1).optional(),
    /** Ed25519 key that signs audit checkpoints (kept off the database; generated when missing). */
    PYREACH_AUDIT_KEY_FILE: z.string().min(1).optional(),
    /** How often a signed checkpoint of the audit head is taken (when the head moved); 0 turns the timer off. */
    PYREACH_AUDIT_CHECKPOINT_INTERVAL_MS: z.coerce
      .number()
      .int()
      .min(0)
      .max(24 * 3600_000)
      .default(300_000),
    /**
     * How often the leader verifies the whole audit chain against its checkpoints; a failure is audited
     * `audit.verify_failed` and notified once per distinct break. 0 turns the timer off (GET /api/audit/verify
     * still records failures).
     */
    PYREACH_AUDIT_VERIFY_INTERVAL_MS: z.coerce
      .number()
      .int()
      .min(0)
      .max(7 * 24 * 3600_000)
      .default(3_600_000),
    /** Off-box copy of every checkpoint: a file appended to as JSON lines. */
    PYREACH_AUDIT_SINK_FILE: z.string().min(1).optional(),
    /** Off-box copy of every checkpoint: an http(s) URL each is POSTed to as JSON. */
    PYREACH_AUDIT_SINK_WEBHOOK: z
      .url({ message: 'PYREACH_AUDIT_SINK_WEBHOOK must be an http(s) URL' })
      .optional(),
    /** Hosts (names or IP addresses, comma separated) the webhook may reach although loopback or private. */
    PYREACH_AUDIT_SINK_WEBHOOK_ALLOW: z.string().optional(),
    /** Ed25519 key the control plane signs vote attestations with (default: attestation.pem beside the signing key). */
    PYREACH_ATTESTATION_KEY_FILE: z.string().min(1).optional(),
    BETTER_AUTH_SECRET: z
      .string()
      .min(32, 'BETTER_AUTH_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)')
      .optional(),
    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, 'REDIS_URL must be a redis:// URL')
      .optional(),
    /** Prefix of every Redis key and channel (adapter, leader lease): one per deployment sharing a Redis. */
    PYREACH_REDIS_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'PYREACH_REDIS_PREFIX: letters, digits, : _ . - (at most 64)')
      .default('pyreach'),
    /** Leader lease TTL: how long housekeeping may go unrun after the leader replica dies. */
    PYREACH_LEADER_LEASE_MS: z.coerce.number().int().min(300).max(600_000).default(15_000),
    /** This replica's name in the leader lease and logs (default host:pid). */
    PYREACH_REPLICA_ID: z.string().min(1).max(200).optional(),
    /**
     * Bearer token Prometheus scrapes `GET /metrics` with; unset: no /metrics at all (404). At least 16
     * characters (e.g. `openssl rand -hex 24`).
     */
    PYREACH_METRICS_TOKEN: z
      .string()
      .min(16, 'PYREACH_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`)')
      .regex(/^[\x21-\x7e]+$/, 'PYREACH_METRICS_TOKEN: printable ASCII without spaces')
      .optional(),
    /** How long readiness waits for Redis to answer PING before the replica counts as not ready. */
    PYREACH_READY_TIMEOUT_MS: z.coerce.number().int().min(50).max(30_000).default(1000),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
    /**
     * Who may read a process's stacks or tasks (`process:inspect`, no approval: nothing runs in the target):
     * a comma list of roles among operator, approver, admin, or `none` to switch inspection off.
     */
    PYREACH_INSPECT_ROLES: z
      .string()
      .default('operator,approver,admin')
      .transform((v, ctx) => {
        const list =
          v.trim() === 'none'
            ? []
            : v
                .split(',')
                .map((r) => r.trim())
                .filter(Boolean);
        const bad = list.filter((r) => !['operator', 'approver', 'admin'].includes(r));
        if (bad.length) {
          ctx.addIssue({
            code: 'custom',
            message: `unknown or not allowed role(s) ${bad.join(', ')}: use operator, approver, admin, or none`,
          });
          return z.NEVER;
        }
        return list as ('operator' | 'approver' | 'admin')[];
      }),
    /** Approving needs a sign-in at most this many minutes old. */
    PYREACH_REAUTH_MINUTES: z.coerce
      .number()
      .int()
      .min(1)
      .max(24 * 60)
      .default(10),
    /** Sign-in attempts per IP + email per minute. */
    PYREACH_LOGIN_RATE_LIMIT: z.coerce.number().int().min(1).max(1000).default(5),
    /** /agents handshakes that may fail (or stay unproven) per source in a burst; refilled per minute. */
    PYREACH_AGENT_HANDSHAKE_BURST: z.coerce.number().int().min(1).max(100_000).default(30),
    PYREACH_AGENT_HANDSHAKE_REFILL_PER_MINUTE: z.coerce.number().min(0.1).max(100_000).default(30),
    /** Failed /agents handshakes are audited as one event per source per this many seconds. */
    PYREACH_AGENT_AUTH_AUDIT_WINDOW_SECONDS: z.coerce.number().min(1).max(86_400).default(60),
    /** Seconds a disconnected agent's in-flight jobs wait before they are declared agent_lost. */
    PYREACH_AGENT_GRACE_SECONDS: z.coerce.number().min(0).max(3600).default(30),
    /** Seconds an agent's connection may be gone before it is declared lost (audited, notified once); 0: never. */
    PYREACH_AGENT_LOST_AFTER_SECONDS: z.coerce
      .number()
      .int()
      .min(0)
      .max(7 * 86_400)
      .default(120),
    /** Agent reports applied together in one transaction at most (those arriving while a batch commits). */
    PYREACH_REPORT_BATCH_MAX: z.coerce.number().int().min(1).max(5000).default(500),
    /** Dispatcher safety-net timer (it is also woken by approvals, connects and completions). */
    PYREACH_DISPATCH_INTERVAL_MS: z.coerce.number().int().min(50).max(600_000).default(2000),
    /** Notification destinations allowed although loopback/private: `host`, `host:port` or CIDR, comma separated. */
    PYREACH_NOTIFY_ALLOW: z.string().optional(),
    /** The key rules' URLs and secrets are sealed with (default: notify.pem beside the signing key). */
    PYREACH_NOTIFY_KEY_FILE: z.string().min(1).optional(),
    /** How often the outbox worker looks for due deliveries when idle; 0 turns delivery off on this replica. */
    PYREACH_NOTIFY_INTERVAL_MS: z.coerce.number().int().min(0).max(600_000).default(1000),
    /** How long a claimed delivery belongs to its worker (a killed one's are taken again after this). */
    PYREACH_NOTIFY_LEASE_MS: z.coerce.number().int().min(1000).max(3_600_000).default(60_000),
    PYREACH_NOTIFY_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
    /** First retry delay (doubles per attempt, up to an hour). */
    PYREACH_NOTIFY_BACKOFF_MS: z.coerce.number().int().min(10).max(3_600_000).default(5000),
    PYREACH_NOTIFY_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(10),
    /** `api` serves only /api and the sockets (no Next.js); `auto` uses the Next build when present. */
    PYREACH_UI: z.enum(['auto', 'next', 'api']).default('auto'),
    /** Behind a reverse proxy: trust X-Forwarded-For from these CIDRs (comma separated). */
    PYREACH_TRUSTED_PROXIES: z.string().optional(),
    OIDC_ISSUER: z.url().optional(),
    OIDC_CLIENT_ID: z.string().min(1).optional(),
    OIDC_CLIENT_SECRET: z.string().min(1).optional(),
    OIDC_PROVIDER_ID: z
      .string()
      .regex(/^[a-z0-9-]+$/)
      .default('oidc'),
    /** What the sign-in button says: "Sign in with <name>". */
    OIDC_PROVIDER_NAME: z.string().min(1).max(60).default('SSO'),
    /** Claims → roles, checked at every SSO sign-in (unset: SSO users arrive as viewers, admins set roles). */
    PYREACH_OIDC_ROLE_MAP: RoleMap,
    /** Role of an SSO user none of whose claims the role map names. */
    PYREACH_OIDC_DEFAULT_ROLE: SsoRole.default('viewer'),
    /** An SSO identity may join the password account with its e-mail — only when the IdP says it is verified. */
    PYREACH_OIDC_LINK_BY_EMAIL: onOff,
    /** `off`: no e-mail + password sign-in at all (needs OIDC). */
    PYREACH_PASSWORD_SIGNIN: onOff,
    /** Seeding a production database must be asked for explicitly. */
    PYREACH_SEED_FORCE: bool,
    /** Seed only: password of the seeded users, and optionally the users as JSON [{email,name,role}]. */
    PYREACH_SEED_PASSWORD: z
      .string()
      .min(12, 'PYREACH_SEED_PASSWORD must be at least 12 characters')
      .default('pyreach-dev-password'),
    PYREACH_SEED_USERS: z.string().optional(),
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production' && !env.BETTER_AUTH_SECRET) {
      ctx.addIssue({
        code: 'custom',
        path: ['BETTER_AUTH_SECRET'],
        message: 'BETTER_AUTH_SECRET is required in production (at least 32 random characters)',
      });
    }
    if (env.DATABASE_MIGRATION_URL && !env.DATABASE_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_MIGRATION_URL'],
        message: 'DATABASE_MIGRATION_URL needs DATABASE_URL (the application role) as well',
      });
    }
    if (env.PYREACH_AUDIT_SINK_WEBHOOK && !/^https?:/.test(env.PYREACH_AUDIT_SINK_WEBHOOK)) {
      ctx.addIssue({
        code: 'custom',
        path: ['PYREACH_AUDIT_SINK_WEBHOOK'],
        message: 'PYREACH_AUDIT_SINK_WEBHOOK must be an http:// or https:// URL',
      });
    }
    if (env.NODE_ENV === 'production' && !env.PUBLIC_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['PUBLIC_URL'],
        message: 'PUBLIC_URL is required in production (cookies and OIDC callbacks use it)',
      });
    }
    const oidc = [env.OIDC_ISSUER, env.OIDC_CLIENT_ID, env.OIDC_CLIENT_SECRET];
    if (oidc.some(Boolean) && !oidc.every(Boolean)) {
      ctx.addIssue({
        code: 'custom',
        path: ['OIDC_ISSUER'],
        message: 'OIDC needs all of OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or none of them)',
      });
    }
    if (env.PYREACH_PASSWORD_SIGNIN === false && !env.OIDC_ISSUER) {
      ctx.addIssue({
        code: 'custom',
        path: ['PYREACH_PASSWORD_SIGNIN'],
        message:
          'PYREACH_PASSWORD_SIGNIN=off needs OIDC (OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET): nobody could sign in',
      });
    }
    for (const key of ['PYREACH_OIDC_ROLE_MAP', 'PYREACH_OIDC_LINK_BY_EMAIL'] as const) {
      if (env[key] !== undefined && !env.OIDC_ISSUER)
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `${key} needs OIDC (OIDC_ISSUER, …) configured`,
        });
    }
  });

export interface Env {
  nodeEnv: 'development' | 'production' | 'test';
  port: number;
  host: string;
  publicUrl: string;
  secureCookies: boolean;
  databaseUrl: string | undefined;
  /** Owner role's URL for migrations; undefined: databaseUrl's role migrates (and owns the audit). */
  databaseMigrationUrl: string | undefined;
  dataDir: string;
  signingKeyFile: string;
  audit: {
    keyFile: string;
    checkpointIntervalMs: number;
    verifyIntervalMs: number;
    sinkFile: string | undefined;
    sinkWebhook: string | undefined;
    webhookAllow: string[];
  };
  attestationKeyFile: string;
  authSecret: string;
  redisUrl: string | undefined;
  redisPrefix: string;
  leaderLeaseMs: number;
  replicaId: string;
  metricsToken: string | undefined;
  readyTimeoutMs: number;
  logLevel: string;
  reauthMinutes: number;
  inspectRoles: ('operator' | 'approver' | 'admin')[];
  loginRateLimit: number;
  agentGraceSeconds: number;
  agentLostAfterSeconds: number;
  reportBatchMax: number;
  dispatchIntervalMs: number;
  ui: 'auto' | 'next' | 'api';
  trustedProxies: string[];
  agentHandshakes: { burst: number; refillPerMinute: number; windowMs: number };
  oidc: {
    issuer: string;
    clientId: string;
    clientSecret: string;
    providerId: string;
    /** Shown on the sign-in button. */
    name: string;
    /** null: the IdP does not manage roles (new SSO users are viewers; admins change roles in Pyreach). */
    roleMap: Record<string, Record<string, 'viewer' | 'operator' | 'approver' | 'admin'>> | null;
    defaultRole: 'viewer' | 'operator' | 'approver' | 'admin';
    linkByEmail: boolean;
  } | null;
  /** E-mail + password sign-in (PYREACH_PASSWORD_SIGNIN, default on). */
  passwordSignIn: boolean;
  seedForce: boolean;
  seedPassword: string;
  seedUsersJson: string | undefined;
  notify: {
    keyFile: string;
    allow: string[];
    intervalMs: number;
    leaseMs: number;
    timeoutMs: number;
    backoffMs: number;
    maxAttempts: number;
  };
}

/**
 * `npm run -w apps/web migrate` (an init container, before the runtime starts): only the two database URLs —
 * it needs neither the auth secret nor the public URL, so it is not given them.
 */
export function parseMigrationEnv(source: NodeJS.ProcessEnv = process.env): {
  databaseUrl: string;
  databaseMigrationUrl: string | undefined;
} {
  const url = z.string().regex(/^postgres(ql)?:\/\//);
  const r = z
    .object({ DATABASE_URL: url, DATABASE_MIGRATION_URL: url.optional() })
    .safeParse(Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== '')));
  if (!r.success)
    throw new EnvError(
      `invalid environment:\n${r.error.issues.map((i) => `  - ${i.path.join('.')}: a postgres:// or postgresql:// URL is required`).join('\n')}`,
    );
  return { databaseUrl: r.data.DATABASE_URL, databaseMigrationUrl: r.data.DATABASE_MIGRATION_URL };
}

export class EnvError extends Error {
  override name = 'EnvError';
}

/** Development convenience: a secret generated once and kept (0600) under the data directory. */
function devSecret(dataDir: string): string {
  const file = path.join(dataDir, 'auth-secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(32).toString('hex');
  writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return secret;
}

export function parseEnv(source: NodeJS.ProcessEnv = process.env): Env {
  // Empty strings mean "unset" (docker-compose and shells produce them readily).
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = RawEnv.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  - ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new EnvError(`invalid environment:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.PYREACH_DATA_DIR);
  const publicUrl = e.PUBLIC_URL ?? `http://${e.HOST.includes(':') ? `[${e.HOST}]` : e.HOST}:${e.PORT}`;
  return {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    publicUrl: publicUrl.replace(/\/$/, ''),
    secureCookies: publicUrl.startsWith('https:'),
    databaseUrl: e.DATABASE_URL,
    databaseMigrationUrl: e.DATABASE_MIGRATION_URL,
    dataDir,
    signingKeyFile: path.resolve(e.PYREACH_SIGNING_KEY_FILE ?? path.join(dataDir, 'keys', 'signing.pem')),
    audit: {
      keyFile: path.resolve(e.PYREACH_AUDIT_KEY_FILE ?? path.join(dataDir, 'keys', 'audit.pem')),
      checkpointIntervalMs: e.PYREACH_AUDIT_CHECKPOINT_INTERVAL_MS,
      verifyIntervalMs: e.PYREACH_AUDIT_VERIFY_INTERVAL_MS,
      sinkFile: e.PYREACH_AUDIT_SINK_FILE ? path.resolve(e.PYREACH_AUDIT_SINK_FILE) : undefined,
      sinkWebhook: e.PYREACH_AUDIT_SINK_WEBHOOK,
      webhookAllow: (e.PYREACH_AUDIT_SINK_WEBHOOK_ALLOW ?? '')
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean),
    },
    attestationKeyFile: path.resolve(
      e.PYREACH_ATTESTATION_KEY_FILE ??
        path.join(
          path.dirname(path.resolve(e.PYREACH_SIGNING_KEY_FILE ?? path.join(dataDir, 'keys', 'signing.pem'))),
          'attestation.pem',
        ),
    ),
    authSecret: e.BETTER_AUTH_SECRET ?? devSecret(dataDir),
    redisUrl: e.REDIS_URL,
    redisPrefix: e.PYREACH_REDIS_PREFIX,
    leaderLeaseMs: e.PYREACH_LEADER_LEASE_MS,
    replicaId: e.PYREACH_REPLICA_ID ?? `${hostname()}:${process.pid}`,
    metricsToken: e.PYREACH_METRICS_TOKEN,
    readyTimeoutMs: e.PYREACH_READY_TIMEOUT_MS,
    logLevel:
      e.LOG_LEVEL ?? (e.NODE_ENV === 'production' ? 'info' : e.NODE_ENV === 'test' ? 'warn' : 'debug'),
    reauthMinutes: e.PYREACH_REAUTH_MINUTES,
    inspectRoles: e.PYREACH_INSPECT_ROLES,
    loginRateLimit: e.PYREACH_LOGIN_RATE_LIMIT,
    agentGraceSeconds: e.PYREACH_AGENT_GRACE_SECONDS,
    agentLostAfterSeconds: e.PYREACH_AGENT_LOST_AFTER_SECONDS,
    reportBatchMax: e.PYREACH_REPORT_BATCH_MAX,
    dispatchIntervalMs: e.PYREACH_DISPATCH_INTERVAL_MS,
    ui: e.PYREACH_UI,
    trustedProxies: (e.PYREACH_TRUSTED_PROXIES ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    agentHandshakes: {
      burst: e.PYREACH_AGENT_HANDSHAKE_BURST,
      refillPerMinute: e.PYREACH_AGENT_HANDSHAKE_REFILL_PER_MINUTE,
      windowMs: e.PYREACH_AGENT_AUTH_AUDIT_WINDOW_SECONDS * 1000,
    },
    oidc:
      e.OIDC_ISSUER && e.OIDC_CLIENT_ID && e.OIDC_CLIENT_SECRET
        ? {
            issuer: e.OIDC_ISSUER,
            clientId: e.OIDC_CLIENT_ID,
            clientSecret: e.OIDC_CLIENT_SECRET,
            providerId: e.OIDC_PROVIDER_ID,
            name: e.OIDC_PROVIDER_NAME,
            roleMap: e.PYREACH_OIDC_ROLE_MAP ?? null,
            defaultRole: e.PYREACH_OIDC_DEFAULT_ROLE,
            linkByEmail: e.PYREACH_OIDC_LINK_BY_EMAIL ?? false,
          }
        : null,
    passwordSignIn: e.PYREACH_PASSWORD_SIGNIN ?? true,
    seedForce: e.PYREACH_SEED_FORCE,
    seedPassword: e.PYREACH_SEED_PASSWORD,
    seedUsersJson: e.PYREACH_SEED_USERS,
    notify: {
      keyFile: path.resolve(
        e.PYREACH_NOTIFY_KEY_FILE ??
          path.join(
            path.dirname(
              path.resolve(e.PYREACH_SIGNING_KEY_FILE ?? path.join(dataDir, 'keys', 'signing.pem')),
            ),
            'notify.pem',
          ),
      ),
      allow: (e.PYREACH_NOTIFY_ALLOW ?? '')
        .split(',')
        .map((x) => x.trim().toLowerCase())
        .filter(Boolean),
      intervalMs: e.PYREACH_NOTIFY_INTERVAL_MS,
      leaseMs: e.PYREACH_NOTIFY_LEASE_MS,
      // A delivery must end (answer or timeout) well inside its lease.
      timeoutMs: Math.min(e.PYREACH_NOTIFY_TIMEOUT_MS, Math.floor(e.PYREACH_NOTIFY_LEASE_MS / 2)),
      backoffMs: e.PYREACH_NOTIFY_BACKOFF_MS,
      maxAttempts: e.PYREACH_NOTIFY_MAX_ATTEMPTS,
    },
  };
}
