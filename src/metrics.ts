import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { EventBus } from './events/bus.ts';

export interface Metrics {
  registry: Registry;
  /** Due times claimed by this instance's scheduler. */
  claims: Counter;
  /** Failed rounds of the scheduler loop or lease maintenance: the database was unreachable or refused. */
  databaseErrors: Counter;
  stop(): void;
}

const LATENESS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600];

/**
 * Prometheus metrics of one instance. Run metrics count what this instance did: they follow the
 * events it publishes itself, not those relayed from other instances.
 */
export function createMetrics(bus: EventBus, instance: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ instance });
  collectDefaultMetrics({ register: registry, prefix: 'server_jobs_' });
  const runs = new Counter({
    name: 'server_jobs_runs_total',
    help: 'Runs that ended or were skipped, by status.',
    labelNames: ['status'],
    registers: [registry],
  });
  const lateness = new Histogram({
    name: 'server_jobs_run_lateness_seconds',
    help: 'Start time minus due time of scheduled runs.',
    buckets: LATENESS_BUCKETS,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'server_jobs_run_duration_seconds',
    help: 'Run duration.',
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const abandoned = new Counter({
    name: 'server_jobs_abandoned_runs_total',
    help: 'Runs this instance marked ABANDONED (lease expired, crash or shutdown).',
    registers: [registry],
  });
  const claims = new Counter({ name: 'server_jobs_claims_total', help: 'Due times this instance claimed.', registers: [registry] });
  const databaseErrors = new Counter({
    name: 'server_jobs_database_errors_total',
    help: 'Failed scheduler rounds (database unreachable or refusing).',
    registers: [registry],
  });
  new Gauge({
    name: 'server_jobs_subscribers',
    help: 'Open GraphQL subscriptions on this instance.',
    registers: [registry],
    collect() {
      this.set(bus.subscriptionCount);
    },
  });

  const off = bus.onPublish((event) => {
    if (event.topic === 'run:started' && event.payload.run.trigger === 'SCHEDULE' && event.payload.run.startedAt) {
      lateness.observe((event.payload.run.startedAt.getTime() - event.payload.run.scheduledAt.getTime()) / 1000);
    } else if (event.topic === 'run:skipped') {
      runs.inc({ status: 'SKIPPED' });
    } else if (event.topic === 'run:finished') {
      const { run } = event.payload;
      runs.inc({ status: run.status });
      if (run.status === 'ABANDONED') abandoned.inc();
      if (run.startedAt && run.finishedAt) duration.observe((run.finishedAt.getTime() - run.startedAt.getTime()) / 1000);
    }
  });
  return { registry, claims, databaseErrors, stop: off };
}
