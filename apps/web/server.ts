/**
 * Pyreach control plane: Next.js + HTTP API + socket.io (/agents, /ui) on one port.
 * Run with tsx: `npm run dev -w apps/web` (development) or `npm start -w apps/web` (production).
 */
import { EnvError, parseEnv } from './src/server/env';
import { createLogger } from './src/server/logger';
import { startControlPlane } from './src/server/control-plane';

async function main(): Promise<void> {
  let env;
  try {
    env = parseEnv();
  } catch (err) {
    if (err instanceof EnvError) {
      process.stderr.write(`pyreach: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger({
    level: env.logLevel,
    pretty: env.nodeEnv === 'development' && process.stdout.isTTY,
  });
  const server = await startControlPlane(env, log);
  // Machine-readable line for supervisors and tests that start the server on port 0.
  if (process.send) process.send({ type: 'listening', port: server.port });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    server.stop(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `pyreach: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
