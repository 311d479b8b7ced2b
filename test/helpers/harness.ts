import { after } from 'node:test';
import pino from 'pino';
import { parseAllowList } from '../../src/connectors/address-policy.ts';
import { HttpConnector, type HttpConnectorOptions } from '../../src/connectors/http.ts';
import { DatabaseConnectorRegistry } from '../../src/connectors/registry.ts';
import { ConnectorService } from '../../src/connectors/connector-service.ts';
import { ConnectorGate } from '../../src/connectors/connector-gate.ts';
import type { Sql } from '../../src/db/client.ts';
import { EventBus } from '../../src/events/bus.ts';
import type { Topic, TopicEvent, Topics } from '../../src/events/topics.ts';
import { JobService } from '../../src/jobs/job-service.ts';
import { reactToChanges } from '../../src/reactions.ts';
import { Scheduler } from '../../src/scheduling/scheduler.ts';
import { ManualClock } from './clock.ts';
import { ScriptedConnector } from './connector.ts';

export const T0 = Date.parse('2026-01-01T00:00:00.000Z');
export const silentLog = pino({ level: 'silent' });

export interface Harness {
  sql: Sql;
  clock: ManualClock;
  bus: EventBus;
  connector: ScriptedConnector;
  registry: DatabaseConnectorRegistry;
  scheduler: Scheduler;
  jobs: JobService;
  connectors: ConnectorService;
  events: TopicEvent[];
}

/**
 * A scheduler, job and connector services and an event bus on a real database with a
 * controlled clock. HTTP connectors may reach 127.0.0.1 (the tests' local servers). The loop
 * is not started: tests drive it with `scheduler.tick()` and await run ends through the bus.
 */
export function harness(
  sql: Sql,
  options: {
    clock?: ManualClock;
    instance?: string;
    leaseSeconds?: number;
    batchSize?: number;
    /** Options of the HTTP connectors beyond the allow-list (e.g. how long idle connections are kept). */
    http?: Omit<HttpConnectorOptions, 'allow'>;
    /**
     * Which clock decides what a change (pause, new period or start, delete) finds already due:
     * the harness's controlled clock standing in for the database's (the default, so that tests
     * at T0 are not months behind the database), or the database's own clock_timestamp(), as
     * in production.
     */
    changeClock?: 'controlled' | 'database';
  } = {},
): Harness {
  const clock = options.clock ?? new ManualClock(T0);
  const bus = new EventBus();
  const connector = new ScriptedConnector('Test');
  const registry = new DatabaseConnectorRegistry(sql, [connector], {
    HTTP: (row) => new HttpConnector(row, { ...options.http, allow: parseAllowList('127.0.0.1') }),
  });
  const gate = new ConnectorGate({ sql, clock, bus, log: silentLog, settingsOf: (id) => registry.rowOf(id) });
  // eslint-disable-next-line prefer-const -- assigned once the scheduler it needs exists, as in src/instance.ts
  let jobs: JobService;
  const scheduler = new Scheduler(
    { sql, operationsSql: sql, clock, bus, registry, log: silentLog },
    {
      instance: options.instance ?? 'test-instance',
      leaseSeconds: options.leaseSeconds ?? 15,
      batchSize: options.batchSize ?? 500,
      autoPause: (jobId, note) => jobs.autoPause(jobId, note),
      gate,
    },
  );
  jobs = new JobService({
    sql,
    clock,
    bus,
    registry,
    scheduler,
    ...(options.changeClock === 'database' ? {} : { databaseNow: async () => clock.now() }),
  });
  const connectors = new ConnectorService({ sql, clock, bus, registry });
  const events: TopicEvent[] = [];
  bus.on((event) => events.push(event));
  reactToChanges({ bus, scheduler, registry, log: silentLog });
  after(() => scheduler.stop(0));
  after(() => registry.close());
  return { sql, clock, bus, connector, registry, scheduler, jobs, connectors, events };
}

/** Resolves with the next event on `topic` that passes `match`. */
export function nextEvent<T extends Topic>(
  bus: EventBus,
  topic: T,
  match: (payload: Topics[T]) => boolean = () => true,
): Promise<Topics[T]> {
  return new Promise((resolve) => {
    const off = bus.on((event) => {
      if (event.topic === topic && match(event.payload as Topics[T])) {
        off();
        resolve(event.payload as Topics[T]);
      }
    });
  });
}

/** Claims what is due now, starts the runs, and waits until every started run has ended. */
export async function tickAndSettle(h: Harness) {
  const started = await h.scheduler.tick();
  await Promise.all(started.map((s) => s.done));
  return started;
}
