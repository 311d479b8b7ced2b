import type { Queryable } from './client.ts';
import type { LogLevel, LogRow } from './rows.ts';

/** A log entry to insert: the id is the database's; job, run and details are optional. */
export type NewLogEntry = Pick<LogRow, 'at' | 'level' | 'message'> & Partial<Pick<LogRow, 'jobId' | 'runId' | 'details'>>;

export async function insertLogEntries(sql: Queryable, entries: NewLogEntry[]): Promise<LogRow[]> {
  if (entries.length === 0) return [];
  return sql<LogRow[]>`
    insert into log_entries (at, level, message, job_id, run_id, details)
    select * from unnest(
      ${sql.array(entries.map((e) => e.at.toISOString()))}::timestamptz[],
      ${sql.array(entries.map((e) => e.level))}::text[],
      ${sql.array(entries.map((e) => e.message))}::text[],
      ${sql.array(entries.map((e) => e.jobId ?? null) as string[])}::text[],
      ${sql.array(entries.map((e) => e.runId ?? null) as string[])}::bigint[],
      ${sql.array(entries.map((e) => (e.details === undefined ? null : JSON.stringify(e.details))) as string[])}::jsonb[])
    returning *`;
}

/**
 * Writes a log entry on behalf of a run, fenced by the run's lease: nothing is written (null)
 * once the run is no longer held by `token`.
 */
export async function insertRunLogEntry(sql: Queryable, token: string, entry: NewLogEntry & { runId: string }): Promise<LogRow | null> {
  const rows = await sql<LogRow[]>`
    insert into log_entries (at, level, message, job_id, run_id, details)
    select ${entry.at}, ${entry.level}, ${entry.message}, r.job_id, r.id,
           ${entry.details === undefined ? null : JSON.stringify(entry.details)}::text::jsonb
    from job_runs r
    where r.id = ${entry.runId} and r.lease_token = ${token} and r.status = 'RUNNING'
    returning *`;
  return rows[0] ?? null;
}

export interface LogPageArgs {
  jobId?: string | null;
  level?: LogLevel | null;
  since?: Date | null;
  first: number;
  after?: { at: Date; id: string } | null;
}

/**
 * Log entries newest first (one page, and one extra row to tell whether a next page exists), read
 * in the order of log_entries_page_idx, or log_entries_job_page_idx for one job: a page costs its
 * rows, not a sort of the whole log. NULLS LAST as the indexes have it: `desc` alone means NULLS
 * FIRST, which no index has (the columns are never null, but the planner does not look at that),
 * with which a page sorted the whole log.
 */
export async function pageLogEntries(sql: Queryable, args: LogPageArgs): Promise<LogRow[]> {
  return sql<LogRow[]>`
    select * from log_entries
    where true
      ${args.jobId != null ? sql`and job_id = ${args.jobId}` : sql``}
      ${args.level != null ? sql`and level = ${args.level}` : sql``}
      ${args.since != null ? sql`and at >= ${args.since}` : sql``}
      ${args.after ? sql`and (at, id) < (${args.after.at}, ${args.after.id})` : sql``}
    order by at desc nulls last, id desc nulls last
    limit ${args.first + 1}`;
}
