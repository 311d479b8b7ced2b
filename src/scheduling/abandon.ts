import type { Sql } from '../db/client.ts';
import { insertLogEntries } from '../db/log.ts';
import type { RunRow } from '../db/rows.ts';
import { abandonRuns } from '../db/runs.ts';
import type { EventBus } from '../events/bus.ts';
import { endLogEntry } from './outcome.ts';

/** Marks runs ABANDONED and writes their ERROR entries in one transaction, then publishes them. */
export async function abandonAndPublish(deps: { sql: Sql; bus: EventBus }, args: Parameters<typeof abandonRuns>[1]): Promise<RunRow[]> {
  const { runs, entries } = await deps.sql.begin(async (tx) => {
    const marked = await abandonRuns(tx, args);
    const logged = await insertLogEntries(
      tx,
      marked.map((run) => {
        const entry = endLogEntry(
          { jobId: run.jobId, runId: run.id, externalCall: run.externalCall },
          { status: 'ABANDONED', error: run.error },
        );
        return { at: args.now, jobId: run.jobId, runId: run.id, ...entry! };
      }),
    );
    return { runs: marked, entries: logged };
  });
  for (const run of runs) deps.bus.publish('run:finished', { at: args.now, run });
  for (const entry of entries) deps.bus.publish('log:added', { entry });
  return runs;
}
