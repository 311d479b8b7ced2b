import type { Logger } from 'pino';
import type { DatabaseConnectorRegistry } from './connectors/registry.ts';
import type { EventBus } from './events/bus.ts';
import type { Scheduler } from './scheduling/scheduler.ts';

/**
 * How an instance reacts to changes, whichever instance made them: the one place that says so.
 * The mutations only publish; the scheduler and the connector registry learn of a change from
 * the bus, the same way for a change made here and one relayed from another instance.
 */
export function reactToChanges(deps: {
  bus: EventBus;
  scheduler: Pick<Scheduler, 'wake' | 'cancelLocal'>;
  registry: Pick<DatabaseConnectorRegistry, 'reload'>;
  log: Logger;
}): () => void {
  const { bus, scheduler, registry, log } = deps;
  return bus.on((event) => {
    if (event.topic === 'job:created' || event.topic === 'job:updated') scheduler.wake();
    else if (event.topic === 'run:cancel-requested') void scheduler.cancelLocal(event.payload.runId);
    else if (event.topic === 'connector:changed') {
      // Logged, never thrown: the change is committed whatever this instance's cache does.
      registry.reload().catch((error: unknown) => log.error({ err: error }, 'reloading connectors failed'));
    }
  });
}
