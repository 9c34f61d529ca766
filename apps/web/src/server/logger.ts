/**
 * pino: JSON lines in production, pretty in development. Messages are constant strings with structured
 * fields; child loggers carry { agentId } / { jobId } / { requestId }. Secrets are redacted by path.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

const SECRET_KEYS = [
  'token',
  'password',
  'newPassword',
  'secret',
  'signature',
  'privateKey',
  'cookie',
  'authorization',
  'set-cookie',
  'nonce',
  'authSecret',
  'clientSecret',
];

/** Redaction paths for the keys at the top level and up to two levels down (pino paths are explicit). */
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`;
  const dot = key.startsWith('[') ? key : `.${key}`;
  return [key, `*${dot}`, `*.*${dot}`, `req.headers${dot}`];
});

export function createLogger(opts: { level: string; pretty: boolean }): Logger {
  return pino({
    level: opts.level,
    base: { svc: 'pyreach-web' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...(opts.pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc' },
          },
        }
      : {}),
  });
}
