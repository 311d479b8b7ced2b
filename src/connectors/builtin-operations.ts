import type { Operation } from './types.ts';

const DAY_MS = 86_400_000;

/**
 * Operations that ship with the service. Retention keeps the log and history tables from
 * growing without bound (pg_cron's unbounded history is the cautionary tale). They delete in
 * batches so a large backlog never holds long locks.
 */
export function builtinOperations(options: {
  logRetentionDays: number;
  runRetentionDays: number;
  now: () => number;
}): Record<string, Operation> {
  const purge =
    (table: 'log_entries' | 'job_runs', column: 'at' | 'scheduled_at', days: number): Operation =>
    async (ctx) => {
      const cutoff = new Date(options.now() - days * DAY_MS);
      let total = 0;
      for (;;) {
        if (ctx.signal.aborted) break;
        const rows = await ctx.sql`
          delete from ${ctx.sql(table)} where id in (
            select id from ${ctx.sql(table)} where ${ctx.sql(column)} < ${cutoff}
            ${table === 'job_runs' ? ctx.sql`and status <> 'RUNNING'` : ctx.sql``}
            limit 5000)
          returning id`;
        total += rows.length;
        if (rows.length < 5000) break;
      }
      await ctx.log('INFO', `Deleted ${total} rows of ${table} older than ${days} days`, {
        table,
        deleted: total,
        cutoff: cutoff.toISOString(),
      });
      return total;
    };
  return {
    PurgeLogEntries: purge('log_entries', 'at', options.logRetentionDays),
    PurgeRuns: purge('job_runs', 'scheduled_at', options.runRetentionDays),
  };
}
