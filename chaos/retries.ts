// The audit of retries (SPEC §3b): SQL over the database after the instances have stopped.
// Attempts are exactly-once like due times — a (job, due time, attempt) has at most one run — and
// every attempt is accounted for: a RETRY run follows a failed attempt of its due time, and a
// failed attempt that was not its due time's last has its retry, or a WARNING that dropped it, or
// a pause or delete of its job that cleared it, or it is still waiting in the job's row.
import type { Sql } from './audit.ts';
import { iso, likePrefix, num } from './coverage.ts';

export interface RetryReport {
  /** RETRY runs of the audited jobs. */
  runs: number;
  /** Failed or timed-out attempts below their job's retry.maxAttempts, and what accounts for each (the first that applies). */
  nonFinalFailures: number;
  retried: number;
  /** Still waiting in the job's row (retry_at, retry_attempt, retry_scheduled_at). */
  pending: number;
  /** Dropped with the WARNING "dropped its retry": the next due time came first. */
  dropped: number;
  /** Cleared by a pause or delete of the job committed after the attempt's end (or the job is gone). */
  clearedByChange: number;
  /** Attempts with more than one run: the extra runs of a (job, due time, attempt). */
  attemptDuplicates: number;
  /** RETRY runs without a failed (FAILED or TIMED_OUT) attempt − 1 of the same due time that ended before it started. */
  orphans: number;
  /** RETRY runs whose retry_of is not the id of their due time's first attempt. */
  wrongRetryOf: number;
  /** Runs with an attempt above their job's retry.maxAttempts. */
  overMax: number;
  /** Failed attempts below the maximum that nothing accounts for: a retry lost. */
  unaccounted: number;
  examples: {
    attemptDuplicates: { jobId: string; scheduledAt: string; attempt: number; count: number }[];
    orphans: { runId: string; jobId: string; scheduledAt: string; attempt: number; previous: string | null }[];
    wrongRetryOf: { runId: string; jobId: string; retryOf: string | null; firstAttempt: string | null }[];
    overMax: { runId: string; jobId: string; attempt: number; maxAttempts: number }[];
    unaccounted: { runId: string; jobId: string; scheduledAt: string; attempt: number; status: string }[];
  };
}

export const emptyRetryReport = (): RetryReport => ({
  runs: 0,
  nonFinalFailures: 0,
  retried: 0,
  pending: 0,
  dropped: 0,
  clearedByChange: 0,
  attemptDuplicates: 0,
  orphans: 0,
  wrongRetryOf: 0,
  overMax: 0,
  unaccounted: 0,
  examples: { attemptDuplicates: [], orphans: [], wrongRetryOf: [], overMax: [], unaccounted: [] },
});

/**
 * Audits the retries of the jobs whose id starts with `jobPrefix`. Run it once every instance
 * has stopped: a retry still waiting then is in its job's row.
 *
 * A pause or delete clears a waiting retry; it cleared this attempt's when it committed after
 * the attempt's end. Both take the job's row lock, and the end writes its ERROR entry before it
 * does (in the same transaction), the change its own entry after: so the change's entry id is
 * larger than the end's exactly when the change committed after it (when it committed before,
 * the retry was written on the paused job and shows as waiting, run or dropped).
 */
export async function auditRetries(sql: Sql, options: { jobPrefix: string }): Promise<RetryReport> {
  const like = likePrefix(options.jobPrefix);

  const duplicates = await sql<{ jobId: string; scheduledAt: Date; attempt: number; n: string }[]>`
    select job_id, scheduled_at, attempt, count(*) as n from job_runs
    where job_id like ${like} and trigger in ('SCHEDULE', 'RETRY')
    group by job_id, scheduled_at, attempt having count(*) > 1
    order by scheduled_at, job_id`;

  const orphans = await sql<{ runId: string; jobId: string; scheduledAt: Date; attempt: number; previous: string | null }[]>`
    select r.id::text as run_id, r.job_id, r.scheduled_at, r.attempt,
           (select string_agg(p.trigger || ' ' || p.status, ', ' order by p.id) from job_runs p
            where p.job_id = r.job_id and p.scheduled_at = r.scheduled_at and p.attempt = r.attempt - 1
              and p.trigger in ('SCHEDULE', 'RETRY')) as previous
    from job_runs r
    where r.job_id like ${like} and r.trigger = 'RETRY'
      and not exists (
        select 1 from job_runs p
        where p.job_id = r.job_id and p.scheduled_at = r.scheduled_at and p.attempt = r.attempt - 1
          and p.trigger = case when r.attempt = 2 then 'SCHEDULE' else 'RETRY' end
          and p.status in ('FAILED', 'TIMED_OUT')
          and p.finished_at <= coalesce(r.started_at, r.finished_at))
    order by r.id`;

  const wrongRetryOf = await sql<{ runId: string; jobId: string; retryOf: string | null; firstAttempt: string | null }[]>`
    select r.id::text as run_id, r.job_id, r.retry_of::text, f.id::text as first_attempt
    from job_runs r
    left join job_runs f on f.job_id = r.job_id and f.scheduled_at = r.scheduled_at and f.trigger = 'SCHEDULE'
    where r.job_id like ${like} and r.trigger = 'RETRY' and r.retry_of is distinct from f.id
    order by r.id`;

  const overMax = await sql<{ runId: string; jobId: string; attempt: number; maxAttempts: number }[]>`
    select r.id::text as run_id, r.job_id, r.attempt, j.retry_max_attempts as max_attempts
    from job_runs r join jobs j on j.id = r.job_id
    where r.job_id like ${like} and r.attempt > j.retry_max_attempts
    order by r.id`;

  // Every failed attempt below the maximum (a deleted job's are all cleared by its delete), and what accounts for it.
  const failures = await sql<{ runId: string; jobId: string; scheduledAt: Date; attempt: number; status: string; by: string | null }[]>`
    select f.id::text as run_id, f.job_id, f.scheduled_at, f.attempt, f.status,
      case
        when exists (select 1 from job_runs q where q.job_id = f.job_id and q.scheduled_at = f.scheduled_at
                       and q.trigger = 'RETRY' and q.attempt = f.attempt + 1) then 'retried'
        when j.retry_at is not null and j.retry_scheduled_at = f.scheduled_at and j.retry_attempt = f.attempt + 1 then 'pending'
        when exists (select 1 from log_entries l where l.job_id = f.job_id and l.run_id is null and l.level = 'WARNING'
                       and l.message like '%dropped its retry%'
                       and (l.details ->> 'attempt')::int = f.attempt + 1
                       and (l.details ->> 'scheduledAt')::timestamptz = f.scheduled_at) then 'dropped'
        when j.id is null then 'cleared'
        when exists (select 1 from log_entries c
                     where c.job_id = f.job_id and c.run_id is null
                       and (starts_with(c.message, 'Job "' || f.job_id || '" paused') or starts_with(c.message, 'Job "' || f.job_id || '" deleted'))
                       -- Without an end entry (none is expected), by the clock.
                       and case when e.id is null then c.at >= f.finished_at else c.id > e.id end) then 'cleared'
      end as by
    from job_runs f
    left join jobs j on j.id = f.job_id
    left join lateral (select max(l.id) as id from log_entries l where l.run_id = f.id and l.details ->> 'status' = f.status) e on true
    where f.job_id like ${like} and f.trigger in ('SCHEDULE', 'RETRY') and f.status in ('FAILED', 'TIMED_OUT')
      and (j.id is null or f.attempt < j.retry_max_attempts)
    order by f.id`;

  const [counts] = await sql<{ runs: string }[]>`select count(*) as runs from job_runs where job_id like ${like} and trigger = 'RETRY'`;
  const by = (what: string | null) => failures.filter((f) => f.by === what);
  const unaccounted = by(null);
  return {
    runs: num(counts!.runs),
    nonFinalFailures: failures.length,
    retried: by('retried').length,
    pending: by('pending').length,
    dropped: by('dropped').length,
    clearedByChange: by('cleared').length,
    attemptDuplicates: duplicates.reduce((n, d) => n + num(d.n) - 1, 0),
    orphans: orphans.length,
    wrongRetryOf: wrongRetryOf.length,
    overMax: overMax.length,
    unaccounted: unaccounted.length,
    examples: {
      attemptDuplicates: duplicates
        .slice(0, 10)
        .map((d) => ({ jobId: d.jobId, scheduledAt: iso(d.scheduledAt), attempt: d.attempt, count: num(d.n) })),
      orphans: orphans.slice(0, 10).map((o) => ({ ...o, scheduledAt: iso(o.scheduledAt) })),
      wrongRetryOf: wrongRetryOf.slice(0, 10),
      overMax: overMax.slice(0, 10),
      unaccounted: unaccounted
        .slice(0, 10)
        .map((f) => ({ runId: f.runId, jobId: f.jobId, scheduledAt: iso(f.scheduledAt), attempt: f.attempt, status: f.status })),
    },
  };
}
