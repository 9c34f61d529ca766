import pino, { type Logger } from 'pino';

/** Structured JSON logs on stdout (journald / docker collect them). Secrets are redacted by path. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { app: 'pyreach-agent', pid: process.pid, ...bindings },
      redact: {
        paths: [
          'token',
          '*.token',
          'privateKey',
          '*.privateKey',
          'signature',
          '*.signature',
          'auth',
          '*.auth',
          'headers.authorization',
        ],
        censor: '[redacted]',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 1, sync: true }),
  );
}
