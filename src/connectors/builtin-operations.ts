import { type Clock, sleepFor } from '../clock.ts';
import type { Sql } from '../db/client.ts';
import type { Operation } from './types.ts';

const DAY_MS = 86_400_000;
/** Rows deleted per statement: each batch holds its row locks for a few milliseconds only. */
const BATCH = 5000;

/** The tables that retention bounds, and the setting that says how long each keeps. */
export const RETENTION = {
  log_entries: { column: 'at', setting: 'LOG_RETENTION_DAYS' },
  job_runs: { column: 'scheduled_at', setting: 'RUN_RETENTION_DAYS' },
} as const;
export type RetainedTable = keyof typeof RETENTION;

/** What one purge of one table did. `cutoff` is null when its retention is 0: it keeps forever. */
export interface Purged {
  table: RetainedTable;
  days: number;
  cutoff: Date | null;
  deleted: number;
}

/**
 * Pauses between batches, by `clock`, of `pauseFactor` times the time the batch took: with 1 a
 * long purge takes at most half of one database connection's time, leaving the rest of the
 * machine (PostgreSQL and the scheduler often share its cores) to the runs.
 */
export interface PurgePacing {
  clock: Clock;
  pauseFactor: number;
}

/**
 * Deletes the rows of `table` older than `days` before `nowMs` (never a RUNNING run), in batches
 * so a large backlog never holds long locks; stops between batches once `signal` aborts. A
 * retention of 0 keeps forever: nothing is deleted. The one way the service purges: the
 * built-in operations and the daily housekeeping both call it.
 */
export async function purgeOlderThan(
  sql: Sql,
  table: RetainedTable,
  days: number,
  nowMs: number,
  signal: AbortSignal,
  pacing?: PurgePacing,
): Promise<Purged> {
  if (days === 0) return { table, days, cutoff: null, deleted: 0 };
  const cutoff = new Date(nowMs - days * DAY_MS);
  const column = RETENTION[table].column;
  let deleted = 0;
  while (!signal.aborted) {
    const batchStart = pacing?.clock.now() ?? 0;
    const [row] = await sql<{ count: number }[]>`
      with gone as (
        delete from ${sql(table)} where id in (
          select id from ${sql(table)} where ${sql(column)} < ${cutoff}
          ${table === 'job_runs' ? sql`and status <> 'RUNNING'` : sql``}
          limit ${BATCH})
        returning 1)
      select count(*)::int as count from gone`;
    deleted += row!.count;
    if (row!.count < BATCH) break;
    if (pacing) await sleepFor(pacing.clock, (pacing.clock.now() - batchStart) * pacing.pauseFactor, signal);
  }
  return { table, days, cutoff, deleted };
}

/** How a purge reads in the log: what it deleted, or that its retention keeps forever. */
export function describePurge({ table, days, cutoff, deleted }: Purged): string {
  if (cutoff === null) return `Kept every row of ${table}: ${RETENTION[table].setting} is 0 (keeps forever)`;
  return `Deleted ${deleted} rows of ${table} older than ${days} days`;
}

/** A purge's figures for a log entry's details. */
export const purgeDetails = ({ table, days, cutoff, deleted }: Purged) => ({
  table,
  deleted,
  retentionDays: days,
  cutoff: cutoff?.toISOString() ?? null,
});

/**
 * Operations that ship with the service. Retention keeps the log and history tables from
 * growing without bound (pg_cron's unbounded history is the cautionary tale). The service also
 * runs the same purges once a day by itself (src/housekeeping/); these are for those who want a
 * schedule of their own.
 */
export function builtinOperations(options: {
  logRetentionDays: number;
  runRetentionDays: number;
  now: () => number;
}): Record<string, Operation> {
  const purge =
    (table: RetainedTable, days: number): Operation =>
    async (ctx) => {
      const purged = await purgeOlderThan(ctx.sql, table, days, options.now(), ctx.signal);
      await ctx.log('INFO', describePurge(purged), purgeDetails(purged));
      return purged.deleted;
    };
  return {
    PurgeLogEntries: purge('log_entries', options.logRetentionDays),
    PurgeRuns: purge('job_runs', options.runRetentionDays),
  };
}
