import { type Clock, settledWithin } from '../clock.ts';
import type { Sql } from '../db/client.ts';
import type { RunRow } from '../db/rows.ts';
import { findRun } from '../db/runs.ts';
import type { EventBus } from '../events/bus.ts';

/** How often a wait for another instance's run end re-reads the run, in case its end's event is lost. */
const RECHECK_MS = 500;

export interface RunEndWatch {
  /** The run's final row once it ends, or the row as it stands after `waitMs`. */
  wait(current: RunRow, waitMs: number): Promise<RunRow>;
  stop(): void;
}

/**
 * Watches for the end of a run held by another instance: its `run:finished` event (which the
 * relay brings), with the row re-read every RECHECK_MS and at the deadline, in case the event
 * is lost (NOTIFY keeps nothing for a listener that was away). Start watching before asking for
 * the end, so that an end arriving at once is not missed.
 */
export function watchRunEnd(deps: { sql: Sql; bus: EventBus; clock: Clock }, runId: string): RunEndWatch {
  let ended!: (run: RunRow) => void;
  const finished = new Promise<RunRow>((resolve) => (ended = resolve));
  const stop = deps.bus.on((event) => {
    if (event.topic === 'run:finished' && event.payload.run.id === runId) ended(event.payload.run);
  });
  const reread = async (fallback: RunRow): Promise<RunRow> => {
    try {
      return (await findRun(deps.sql, runId)) ?? fallback;
    } catch {
      // The database is away: answer what is known.
      return fallback;
    }
  };
  const wait = async (current: RunRow, waitMs: number): Promise<RunRow> => {
    const deadline = deps.clock.now() + waitMs;
    for (let left = waitMs; left > 0; left = deadline - deps.clock.now()) {
      const event = await settledWithin(deps.clock, finished, Math.min(left, RECHECK_MS));
      if (event) return event;
      current = await reread(current);
      if (current.status !== 'RUNNING') return current;
    }
    return reread(current);
  };
  return { wait, stop };
}
