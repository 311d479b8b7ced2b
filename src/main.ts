import { ConfigError, loadConfig } from './config.ts';
import { DataDirInUseError } from './db/embedded.ts';
import { createLogger } from './logger.ts';
import { startService } from './service.ts';

/** The only place that reads the environment, listens and handles signals. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const log = createLogger(config.LOG_LEVEL, config.INSTANCE_ID);
  let service;
  try {
    service = await startService({ config, log });
  } catch (error) {
    if (error instanceof DataDirInUseError) {
      log.error(error.message);
      process.exit(1);
    }
    log.fatal({ err: error }, 'the service could not start');
    process.exit(1);
  }
  const shown = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  log.info(
    { database: config.DATABASE_URL ? 'external' : 'embedded' },
    `Server Jobs is running: GraphiQL at http://${shown === '127.0.0.1' ? 'localhost' : shown}:${service.port}/graphql`,
  );
  if (!config.AUTH_TOKENS) log.warn(`authentication is off (no AUTH_TOKENS); listening on ${config.HOST} only`);

  let firstSignalAt = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    // npm and the terminal may both deliver one Ctrl-C; only a later, second one forces the exit.
    if (firstSignalAt !== 0) {
      if (Date.now() - firstSignalAt < 1000) return;
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    firstSignalAt = Date.now();
    log.info({ signal, graceSeconds: config.SHUTDOWN_GRACE_SECONDS }, 'shutting down');
    service.stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

await main();
