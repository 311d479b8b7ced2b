import { ConfigError, loadConfig } from './config.ts';
import { logAuth } from './auth/start.ts';
import { createLogger } from './logger.ts';

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

  // Signals are handled from the start: one that arrives while starting stops the service as
  // soon as it is up, so the embedded PostgreSQL is never left behind.
  let stopRequested: NodeJS.Signals | null = null;
  let firstSignalAt = 0;
  let stop: (() => Promise<void>) | null = null;
  const shutdown = (signal: NodeJS.Signals) => {
    // npm and the terminal may both deliver one Ctrl-C; only a later, second one forces the exit.
    if (firstSignalAt !== 0) {
      if (Date.now() - firstSignalAt < 1000) return;
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    firstSignalAt = Date.now();
    stopRequested = signal;
    log.info({ signal, graceSeconds: config.SHUTDOWN_GRACE_SECONDS }, 'shutting down');
    if (stop) void finish(stop);
  };
  const finish = (stopService: () => Promise<void>) =>
    stopService().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // A stray rejection (a connector's late promise, a dropped socket) is logged; it never ends the service.
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection'));
  // Server operations run in this process: one that throws from a timer or an unhandled 'error'
  // event must not take every other job down with it (SPEC §8).
  process.on('uncaughtException', (error) => log.error({ err: error }, 'uncaught exception (the service keeps running)'));

  // Loaded only now, so that a bad configuration is reported at once.
  const { startInstance } = await import('./instance.ts');
  const { DataDirInUseError } = await import('./db/embedded.ts');
  let service;
  try {
    service = await startInstance({ config, log });
  } catch (error) {
    if (error instanceof DataDirInUseError) log.error(error.message);
    else log.fatal({ err: error }, 'the service could not start');
    process.exit(1);
  }
  stop = service.stop;
  if (stopRequested) return void finish(stop);

  const shown = ['127.0.0.1', '0.0.0.0', '::'].includes(config.HOST) ? 'localhost' : config.HOST;
  const scheme = config.TLS_CERT_FILE ? 'https' : 'http';
  const origin = `${scheme}://${shown.includes(':') ? `[${shown}]` : shown}:${service.port}`;
  const url = `${origin}/graphql`;
  // The sentence is for people; programs (the process helper of the tests and the chaos harness)
  // wait for `event: 'listening'` and read its fields, never the words.
  log.info(
    { event: 'listening', host: config.HOST, port: service.port, url, database: config.DATABASE_URL ? 'external' : 'embedded' },
    `Server Jobs is running: the dashboard at ${origin}/, GraphiQL at ${url}`,
  );
  logAuth(config, log);
}

await main();
