import type { Circuit } from '../connectors/circuit.ts';
import type { JobRow, LogRow, RunRow } from '../db/rows.ts';

/** Every topic the bus carries and its payload. Names are `noun:verb`. */
export interface Topics {
  'job:created': { at: Date; job: JobRow };
  'job:updated': { at: Date; job: JobRow };
  'job:deleted': { at: Date; jobId: string };
  'run:started': { at: Date; run: RunRow };
  'run:skipped': { at: Date; run: RunRow };
  /** A run ended: SUCCEEDED, FAILED, TIMED_OUT, ABANDONED or CANCELLED. */
  'run:finished': { at: Date; run: RunRow };
  'log:added': { entry: LogRow };
  /**
   * A connector's circuit opened or closed (SPEC §3b), published by the instance whose write did
   * it and relayed to the others. `circuit` is null when the breaker was turned off.
   */
  'circuit:opened': { at: Date; connectorId: string; circuit: Circuit | null };
  'circuit:closed': { at: Date; connectorId: string; circuit: Circuit | null };
  /** Internal: a connector was created, changed or deleted; instances reload their registry. */
  'connector:changed': { at: Date; connectorId: string };
  /** Internal: cancelRun asks whichever instance holds the run to abort it. */
  'run:cancel-requested': { at: Date; runId: string };
}

export type Topic = keyof Topics;
export type TopicEvent = { [T in Topic]: { topic: T; payload: Topics[T] } }[Topic];
