import type { Queryable, Sql } from './client.ts';
import type { Definition } from '../jobs/job-definition.ts';
import type { JobRow } from './rows.ts';

/** A job to insert: its definition, state and schedule; the time stamps are `now`, the rest starts at its defaults. */
export type NewJob = Definition & Pick<JobRow, 'id' | 'enabled' | 'anchorAt' | 'nextDueAt'> & { now: Date };

/** Inserts jobs (of distinct ids) in one statement; answers the rows inserted: a job whose id is taken is not. */
export async function insertJobs(sql: Queryable, jobs: readonly NewJob[]): Promise<JobRow[]> {
  if (jobs.length === 0) return [];
  const column = <T>(value: (job: NewJob) => T) => sql.array(jobs.map(value) as never[]);
  const iso = (date: Date | null) => date?.toISOString() ?? null;
  return sql<JobRow[]>`
    insert into jobs (id, name, connector_id, method, period_seconds, cron, time_zone, end_at, enabled, timeout_seconds,
                      overlap, misfire, retry_max_attempts, retry_backoff_seconds, retry_backoff_factor,
                      retry_max_backoff_seconds, auto_pause_after_failures, anchor_at, next_due_at, created_at, updated_at)
    select v.id, v.name, v.connector_id, v.method, v.period_seconds, v.cron, v.time_zone, v.end_at, v.enabled, v.timeout_seconds,
           v.overlap, v.misfire, v.retry_max_attempts, v.retry_backoff_seconds, v.retry_backoff_factor,
           v.retry_max_backoff_seconds, v.auto_pause_after_failures, v.anchor_at, v.next_due_at, v.now, v.now
    from unnest(${column((j) => j.id)}::text[], ${column((j) => j.name)}::text[],
                ${column((j) => j.connectorId)}::text[], ${column((j) => j.method)}::text[],
                ${column((j) => j.periodSeconds)}::int[], ${column((j) => j.cron)}::text[],
                ${column((j) => j.timeZone)}::text[], ${column((j) => iso(j.endAt))}::timestamptz[],
                ${column((j) => j.enabled)}::boolean[], ${column((j) => j.timeoutSeconds)}::int[],
                ${column((j) => j.overlap)}::text[], ${column((j) => j.misfire)}::text[],
                ${column((j) => j.retryMaxAttempts)}::int[], ${column((j) => j.retryBackoffSeconds)}::int[],
                ${column((j) => j.retryBackoffFactor)}::float8[], ${column((j) => j.retryMaxBackoffSeconds)}::int[],
                ${column((j) => j.autoPauseAfterFailures)}::int[], ${column((j) => iso(j.anchorAt))}::timestamptz[],
                ${column((j) => iso(j.nextDueAt))}::timestamptz[], ${column((j) => iso(j.now))}::timestamptz[])
         as v(id, name, connector_id, method, period_seconds, cron, time_zone, end_at, enabled, timeout_seconds,
              overlap, misfire, retry_max_attempts, retry_backoff_seconds, retry_backoff_factor,
              retry_max_backoff_seconds, auto_pause_after_failures, anchor_at, next_due_at, now)
    on conflict (id) do nothing
    returning *`;
}

export async function findJob(sql: Queryable, id: string): Promise<JobRow | null> {
  const rows = await sql<JobRow[]>`select * from jobs where id = ${id}`;
  return rows[0] ?? null;
}

/** The jobs of these ids (those that exist), in one statement. */
export async function findJobs(sql: Queryable, ids: readonly string[]): Promise<JobRow[]> {
  if (ids.length === 0) return [];
  return sql<JobRow[]>`select * from jobs where id = any(${sql.array([...ids])}::text[])`;
}

/**
 * The database's clock, in epoch milliseconds: read inside a change's transaction, after the job
 * row is locked, it decides which due times are already due when the change commits (SPEC §3).
 */
export async function databaseNow(sql: Queryable): Promise<number> {
  const [row] = await sql<{ ms: number }[]>`select floor(extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
  return row!.ms;
}

/** Locks the job row for the rest of the transaction, so claims and changes of one job serialise. */
export async function lockJob(sql: Queryable, id: string): Promise<JobRow | null> {
  const rows = await sql<JobRow[]>`select * from jobs where id = ${id} for update`;
  return rows[0] ?? null;
}

/**
 * Locks the jobs of these ids (those that exist), or every job when `ids` is null, for the rest
 * of the transaction, in id order (so two such transactions never wait on each other in a
 * cycle); answers them in that order.
 */
export async function lockJobs(sql: Queryable, ids: readonly string[] | null): Promise<JobRow[]> {
  if (ids === null) return sql<JobRow[]>`select * from jobs order by id for update`;
  if (ids.length === 0) return [];
  return sql<JobRow[]>`select * from jobs where id = any(${sql.array([...ids])}::text[]) order by id for update`;
}

/** The jobs by id, optionally only the enabled or paused ones, optionally only those of `ids` (those that exist). */
export async function listJobs(sql: Queryable, filter: { enabled?: boolean | null; ids?: readonly string[] | null }): Promise<JobRow[]> {
  const enabled = filter.enabled == null ? sql`` : sql`and enabled = ${filter.enabled}`;
  const ids = filter.ids == null ? sql`` : sql`and id = any(${sql.array([...filter.ids])}::text[])`;
  return sql<JobRow[]>`select * from jobs where true ${enabled} ${ids} order by id`;
}

export type JobChanges = Partial<Omit<JobRow, 'id' | 'createdAt' | 'updatedAt'>>;

export async function updateJobRow(sql: Queryable, id: string, changes: JobChanges, now: Date): Promise<JobRow | null> {
  // Keys are camelCase; the client's transform maps them to the snake_case columns.
  const values: Record<string, unknown> = { updatedAt: now };
  for (const [key, value] of Object.entries(changes)) if (value !== undefined) values[key] = value;
  const rows = await sql<JobRow[]>`update jobs set ${sql(values as Record<string, never>)} where id = ${id} returning *`;
  return rows[0] ?? null;
}

/** Deletes a job; returns the deleted row, or null when there was none. */
export async function deleteJobRow(sql: Queryable, id: string): Promise<JobRow | null> {
  const rows = await sql<JobRow[]>`delete from jobs where id = ${id} returning *`;
  return rows[0] ?? null;
}

/** Deletes the jobs of these ids (those that exist). */
export async function deleteJobRows(sql: Queryable, ids: readonly string[]): Promise<void> {
  if (ids.length > 0) await sql`delete from jobs where id = any(${sql.array([...ids])}::text[])`;
}

/**
 * The earliest due time among enabled jobs, or retry that can start then: when the scheduler must
 * next look. A retry of a job with a run in progress (not ALLOW) waits for that run's end, which
 * wakes the scheduler; so does a QUEUE_ONE due time, which is not here either.
 */
export async function earliestDue(sql: Queryable): Promise<Date | null> {
  const [row] = await sql<{ due: Date | null }[]>`
    select min(least(next_due_at, case when retry_at is not null and (overlap = 'ALLOW' or not exists (
             select 1 from job_runs r where r.job_id = jobs.id and r.status = 'RUNNING')) then retry_at end)) as due
    from jobs where enabled`;
  return row?.due ?? null;
}

/**
 * Vacuums the jobs table. Every claim rewrites the row of each job it claims; nearly all of those
 * updates are HOT and pruned in place, but the few that find their page full leave a dead line
 * pointer only VACUUM reclaims, and the table (which every claim reads whole) would grow for ever
 * where autovacuum is off. A few hundred pages take milliseconds. SKIP_LOCKED: when another
 * instance is vacuuming it, this one does not wait.
 */
export async function vacuumJobs(sql: Sql): Promise<void> {
  await sql`vacuum (skip_locked) jobs`;
}
