import path from 'node:path';
import type { Logger } from 'pino';
import { type Clock, OffsetClock, settledWithin, type TimeSource } from './clock.ts';
import type { Config } from './config.ts';
import { ServerOperationsConnector } from './connectors/server-operations.ts';
import { HttpConnector } from './connectors/http.ts';
import { DatabaseConnectorRegistry } from './connectors/registry.ts';
import { ConnectorService } from './connectors/connector-service.ts';
import { ConnectorGate } from './connectors/connector-gate.ts';
import { SecretBox } from './connectors/secret-box.ts';
import { sealStoredSecrets } from './connectors/secrets-at-rest.ts';
import { connect, sampleDatabaseClock } from './db/client.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from './db/embedded.ts';
import { runMigrations } from './db/migrate.ts';
import { findRuns } from './db/runs.ts';
import { EventBus } from './events/bus.ts';
import { createMetrics } from './metrics.ts';
import { PgEventRelay } from './events/pg-relay.ts';
import { buildApp } from './http/app.ts';
import { webOptionsFrom } from './http/web-guard.ts';
import { JobService } from './jobs/job-service.ts';
import { builtinOperations } from './connectors/builtin-operations.ts';
import { Housekeeper } from './housekeeping/housekeeper.ts';
import { reactToChanges } from './reactions.ts';
import { apiTokens } from './auth/start.ts';
import { Scheduler } from './scheduling/scheduler.ts';

export interface Instance {
  /** The bound HTTP port. */
  port: number;
  databaseUrl: string;
  scheduler: Scheduler;
  bus: EventBus;
  relay: PgEventRelay;
  /** The daily housekeeping (HOUSEKEEPING_AT). */
  housekeeper: Housekeeper;
  /** Graceful: stop claiming, let runs finish within the grace period, close everything. */
  stop(): Promise<void>;
}

export interface InstanceOptions {
  config: Config;
  log: Logger;
  /** Tests pass a controlled clock; production measures its offset to the database's clock. */
  clock?: Clock;
}

/** /health answers within this even when the database does not. */
const HEALTH_TIMEOUT_MS = 2000;

/** How often the offset to the database's clock is measured again. */
const CLOCK_SYNC_MS = 60_000;
/** Samples per measurement: the one with the shortest round trip is kept. */
const CLOCK_SAMPLES = 5;
const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/** Composition root of one instance: database → migrations → connectors → scheduler → HTTP. */
export async function startInstance({ config, log, clock: givenClock }: InstanceOptions): Promise<Instance> {
  const cleanup: (() => Promise<void> | void)[] = [];
  const unwind = async () => {
    for (const step of cleanup.reverse())
      await Promise.resolve(step()).catch((error: unknown) => log.error({ err: error }, 'shutdown step failed'));
  };
  try {
    let embedded: EmbeddedPostgres | null = null;
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: path.resolve(config.DATA_DIR), port: config.EMBEDDED_PG_PORT, log });
      cleanup.push(() => embedded!.stop());
      databaseUrl = embedded.url;
      log.info({ dataDir: embedded.dataDir, port: embedded.port }, 'embedded PostgreSQL started');
    }
    await runMigrations(databaseUrl);

    // The scheduler's transactions are a few statements long: one idle for a fraction of a lease is stuck.
    const db = connect(databaseUrl, {
      max: 10,
      applicationName: `server-jobs ${config.INSTANCE_ID}`,
      idleInTransactionMs: Math.max(2000, (config.LEASE_SECONDS * 1000) / 3),
    });
    cleanup.push(() => db.close());
    // Built-in operations get a small pool of their own, so a hung one cannot starve the scheduler
    // (operations from SERVER_OPERATIONS_DIR run on worker threads, each with its own).
    const operationsDb = connect(databaseUrl, { max: 3, applicationName: `server-jobs operations ${config.INSTANCE_ID}` });
    cleanup.push(() => operationsDb.close());
    // The API gets a pool of its own, for its reads and its job changes alike: a burst of
    // dashboard queries or of createJob mutations waits for these connections, never for the
    // scheduler's (claims, run ends, lease renewals), and takes none of them. Job changes still
    // serialise with claims: through the job row's lock, whatever pool its transaction runs on;
    // a change waiting for that lock holds one of these connections, not a scheduler's.
    const apiDb = connect(databaseUrl, {
      max: 4,
      applicationName: `server-jobs api ${config.INSTANCE_ID}`,
      idleInTransactionMs: Math.max(2000, (config.LEASE_SECONDS * 1000) / 3),
    });
    cleanup.push(() => apiDb.close());

    let clock = givenClock;
    if (!clock) {
      // The clock is measured on a connection of its own: on the shared pool a sample would
      // include the wait for a free connection, and "now" would run ahead by half of it.
      const clockDb = connect(databaseUrl, { max: 1, applicationName: `server-jobs clock ${config.INSTANCE_ID}` });
      cleanup.push(() => clockDb.close());
      const offsetClock = new OffsetClock();
      const sample = (time: TimeSource) => sampleDatabaseClock(clockDb.sql, () => time.monotonicMs(), CLOCK_SAMPLES);
      const measured = await offsetClock.sync(sample);
      log.info(
        { offsetMs: Math.round(offsetClock.offsetMs), roundTripMs: round3(measured.roundTripMs) },
        'clock offset to the database measured',
      );
      let syncing = false;
      const timer = setInterval(() => {
        // A sync still waiting (the database away) is not joined by another.
        if (syncing) return;
        syncing = true;
        offsetClock
          .sync(sample)
          .catch((error: unknown) => log.warn({ err: error }, 'measuring the clock offset failed'))
          .finally(() => (syncing = false));
      }, CLOCK_SYNC_MS);
      timer.unref();
      cleanup.push(() => clearInterval(timer));
      clock = offsetClock;
    }

    // A run's start that overtook the end of the job's previous run (recorded by another
    // instance, its notification still on the way) waits for that end, read back from its row.
    const bus = new EventBus({
      readRuns: (ids) => findRuns(db.sql, ids),
      onListenerError: (error, event) => log.error({ err: error, topic: event.topic }, 'an event listener failed'),
    });
    const metrics = createMetrics(bus, config.INSTANCE_ID);
    cleanup.push(() => metrics.stop());
    const operations = new ServerOperationsConnector({
      dir: path.resolve(config.SERVER_OPERATIONS_DIR),
      builtins: builtinOperations({
        logRetentionDays: config.LOG_RETENTION_DAYS,
        runRetentionDays: config.RUN_RETENTION_DAYS,
        now: clock.now.bind(clock),
      }),
      databaseUrl,
      instance: config.INSTANCE_ID,
      workers: config.SERVER_OPERATIONS_WORKERS,
      log: log.child({ component: 'operations' }),
    });
    await operations.start();
    cleanup.push(() => operations.stop());
    const allow = config.HTTP_CONNECTOR_ALLOW_HOSTS;
    // Connector secrets at rest (SPEC §8): encrypted (or re-encrypted) before anything reads them.
    const secrets = SecretBox.fromSettings(config);
    await sealStoredSecrets(db.sql, secrets, log.child({ component: 'secrets' }));
    const registry = new DatabaseConnectorRegistry(
      db.sql,
      [operations],
      {
        HTTP: (row) => new HttpConnector(row, { allow }),
      },
      secrets,
    );
    await registry.reload();
    cleanup.push(() => registry.close());

    // Connectors' circuit breakers and limits of concurrent calls, between the claims and the calls.
    const gate = new ConnectorGate({
      sql: db.sql,
      clock,
      bus,
      log: log.child({ component: 'connectors' }),
      settingsOf: (id) => registry.rowOf(id),
    });
    // eslint-disable-next-line prefer-const -- assigned once the scheduler it needs exists
    let jobs: JobService;
    const scheduler = new Scheduler(
      { sql: db.sql, operationsSql: operationsDb.sql, clock, bus, registry, log: log.child({ component: 'scheduler' }) },
      {
        instance: config.INSTANCE_ID,
        leaseSeconds: config.LEASE_SECONDS,
        observe: { claimed: (count) => metrics.claims.inc(count), failed: () => metrics.databaseErrors.inc() },
        // The job service is made below, with the scheduler it needs; by the first run's end it exists.
        autoPause: (jobId, note) => jobs.autoPause(jobId, note),
        gate,
      },
    );
    // An embedded database belongs to this process alone: any run still RUNNING was left by a crashed predecessor.
    if (embedded) {
      const orphans = await scheduler.abandonOrphans();
      if (orphans.length > 0) log.warn({ runs: orphans.length }, 'marked runs of a crashed predecessor ABANDONED');
    }

    // Events reach the other instances, and theirs reach this one, through PostgreSQL.
    const relay = new PgEventRelay({
      sql: db.sql,
      clock,
      bus,
      log: log.child({ component: 'events' }),
      origin: scheduler.holder.token,
      // What changed while the listener was away is read again.
      onResync: () => {
        scheduler.wake();
        registry.reload().catch((error: unknown) => log.error({ err: error }, 'reloading connectors failed'));
      },
    });
    await relay.start();
    cleanup.push(() => relay.stop());
    cleanup.push(reactToChanges({ bus, scheduler, registry, log }));

    jobs = new JobService({ sql: apiDb.sql, clock, bus, registry, scheduler });
    const connectors = new ConnectorService({ sql: db.sql, clock, bus, registry, secrets });
    const app = buildApp({
      context: { sql: apiDb.sql, jobs, connectors, registry, bus },
      log,
      // API tokens (SPEC §8): AUTH_TOKENS, or AUTH_TOKENS_FILE watched until the instance stops.
      auth: apiTokens(config, log, cleanup),
      web: webOptionsFrom(config),
      metrics: () => metrics.registry,
      health: async () => {
        const answered = db.sql`select 1`.then(
          () => true,
          () => false,
        );
        const database = (await settledWithin(clock, answered, HEALTH_TIMEOUT_MS)) ? 'up' : 'down';
        const ok = database === 'up' && scheduler.healthy;
        return { ok, body: { instance: config.INSTANCE_ID, database, scheduler: scheduler.healthy ? 'running' : 'stalled' } };
      },
    });
    scheduler.start();
    cleanup.push(() => scheduler.stop(config.SHUTDOWN_GRACE_SECONDS * 1000));
    const port = await app.listen(config.PORT, config.HOST);
    // HTTP closes first (no new work), then the scheduler drains, then the database goes.
    cleanup.push(() => app.close());
    // On the operations' pool: a long purge never takes the scheduler's connections.
    const housekeeper = new Housekeeper(
      { sql: operationsDb.sql, clock, bus, log: log.child({ component: 'housekeeping' }) },
      {
        instance: config.INSTANCE_ID,
        at: config.HOUSEKEEPING_AT,
        logRetentionDays: config.LOG_RETENTION_DAYS,
        runRetentionDays: config.RUN_RETENTION_DAYS,
      },
    );
    housekeeper.start();
    cleanup.push(() => housekeeper.stop());

    let stopping: Promise<void> | null = null;
    return {
      port,
      databaseUrl,
      scheduler,
      bus,
      relay,
      housekeeper,
      stop: () => (stopping ??= unwind()),
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}
