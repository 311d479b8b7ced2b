// The audit of a chaos run: SQL over the database after the instances have stopped, checking
// SPEC §3 "exactly once per due time" job by job, and SPEC §3b's retries attempt by attempt
// (chaos/retries.ts).
//
// For each audited job never changed (created without startAt, so its grid is fixed): the grid
// points run from its first due time, anchor + period, to its last claimed due time,
// next_due_at − period. A SCHEDULE run accounts for its scheduled_at and for the `missed` grid
// points before it (scheduled_at − k·period, k = 1..missed) — SKIPPED and ABANDONED runs
// included. Every grid point must be accounted for exactly once. `gridCoverage` (chaos/coverage.ts)
// applies the same definition to spans of grid a caller knows: the jobs the harness paused,
// resumed, re-periodised or deleted, whose spans chaos/change-spans.ts rebuilds from the
// database's audit trail. A cron job's due times are its pattern's instants in its zone, from its
// first due time to before next_due_at, computed with the service's pure functions; a coalesced
// run stands for the `missed` instants immediately before its own (chaos/coverage.ts).
import postgres from 'postgres';
import { type DueSpan, gridCoverage, iso, likePrefix, num } from './coverage.ts';
import { auditRetries, type RetryReport } from './retries.ts';

export type Sql = postgres.Sql;

/** A client for the harness itself, named so that a "terminate all service connections" fault spares it. */
export function auditClient(url: string): Sql {
  return postgres(url, {
    max: 3,
    onnotice: () => {},
    connect_timeout: 10,
    transform: postgres.camel,
    connection: { application_name: 'chaos-harness' },
  });
}

/** The database's clock (the one clock of SPEC §3). */
export async function dbNow(sql: Sql): Promise<Date> {
  const [row] = await sql<{ now: Date }[]>`select clock_timestamp() as now`;
  return row!.now;
}

/** The harness's view of the database's clock: its own clock plus an offset measured at the start. */
export interface DbClock {
  /** Now by the database's clock, epoch ms. */
  now(): number;
  /** Database time of a moment of the harness's own clock (Date.now()). */
  at(localMs: number): number;
  /** The offset (database − harness) and the round trip of the sample it came from: the offset is good to half of it. */
  offsetMs: number;
  rttMs: number;
}

/** Measures the harness's offset to the database's clock: the best of `samples` (the shortest round trip). */
export async function dbClock(sql: Sql, samples = 5): Promise<DbClock> {
  let best = { offsetMs: 0, rttMs: Infinity };
  for (let i = 0; i < samples; i++) {
    const t0 = Date.now();
    const db = (await dbNow(sql)).getTime();
    const t1 = Date.now();
    if (t1 - t0 < best.rttMs) best = { offsetMs: db - (t0 + t1) / 2, rttMs: t1 - t0 };
  }
  const { offsetMs, rttMs } = best;
  return { offsetMs, rttMs, now: () => Date.now() + offsetMs, at: (localMs) => localMs + offsetMs };
}

export interface Percentiles {
  count: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

export interface AbandonedReport {
  total: number;
  /** Marked by another instance after the holder stopped renewing ("lease expired"). */
  leaseExpired: number;
  /** Aborted by a graceful stop after the grace period ("instance shut down"). */
  shutdown: number;
  /** Ended by its holder, which could not renew its lease in time and aborted the call ("lease lost: could not renew within N s"). */
  leaseLost: number;
  /** Claimed, but the claim's reply never reached its holder, which ended it unlaunched ("claim reply lost: …"). */
  replyLost: number;
  /** Anything else: must be 0 (a run is never abandoned while its holder still holds it). */
  other: number;
  /** finished_at − (lease_expires_at − LEASE_SECONDS): time since the last lease renewal, for lease-expired runs (less those excluded). */
  latencyMs: Percentiles;
  /** The bound: 2 × LEASE_SECONDS. */
  boundMs: number;
  /** Lease-expired runs marked later than the bound. */
  overBound: number;
  /** Lease-expired runs left out of the bound (claims a frozen process committed when it resumed). */
  excluded: number;
}

export interface AuditReport {
  jobs: number;
  runs: number;
  byStatus: Record<string, number>;
  byInstance: Record<string, number>;
  /** Grid points that had to be accounted for. */
  dueTimes: number;
  /** Of those, the cron jobs' (their due times are their pattern's instants). */
  cron: { jobs: number; dueTimes: number };
  /** QUEUE_ONE due times still waiting when the instances stopped (accounted for: their run comes next). */
  queuedPending: number;
  /** Retry attempts: each (job, due time, attempt) once, each failed non-final attempt retried or accounted for. */
  retries: RetryReport;
  /** Extra SCHEDULE runs for one (job, due time). */
  duplicates: number;
  /** Grid points with no run, no SKIPPED run and not in a coalesced run's `missed`. */
  unaccounted: number;
  /** Grid points accounted for by more than one run. */
  doubleAccounted: number;
  /** Due times runs stand for that are not grid points of the audited range. */
  offGrid: number;
  /** Runs still RUNNING after every instance stopped. */
  leftRunning: number;
  /** Runs of any trigger (SCHEDULE, coalesced, MANUAL) that started before their scheduledAt. */
  earlyStarts: number;
  coalesced: { runs: number; missed: number };
  skipped: number;
  /** SKIPPED runs a change recorded (its WARNING names the change), and the due times they account for. */
  changeSkipped: { runs: number; dueTimes: number };
  /** SKIPPED runs with no WARNING entry of their own. */
  skippedUnlogged: number;
  /** Grid points inside a change's bracket (see GridSpan) and how many of them were left out, legitimately. */
  unsure: { dueTimes: number; leftOut: number };
  abandoned: AbandonedReport;
  /** Log entries of ABANDONED runs written after the run was marked (other than the marking entry itself). */
  staleLogWrites: number;
  /** started_at − scheduled_at of on-time runs (missed = 0, not SKIPPED, not of a QUEUE_ONE job), ms. */
  latenessMs: Percentiles;
  /** A few examples of each failure, for diagnosis. */
  examples: {
    duplicates: { jobId: string; scheduledAt: string; count: number }[];
    unaccounted: { jobId: string; dueAt: string }[];
    doubleAccounted: { jobId: string; dueAt: string; count: number }[];
    offGrid: { jobId: string; dueAt: string }[];
    leftRunning: { id: string; jobId: string; instance: string | null }[];
    earlyStarts: { runId: string; jobId: string; trigger: string; scheduledAt: string; startedAt: string }[];
    skippedUnlogged: { runId: string; jobId: string; scheduledAt: string }[];
    staleLogWrites: { runId: string; at: string; finishedAt: string; message: string }[];
    overBound: { runId: string; instance: string | null; latencyMs: number }[];
    abandonedOther: { runId: string; instance: string | null; error: string | null }[];
  };
}

/** The error of a run whose holder could not renew its lease in time and aborted its call itself (src/scheduling/scheduler.ts). */
const LEASE_LOST = '^lease lost: could not renew within [0-9]+ s$';
const numOrNull = (value: unknown): number | null => (value == null ? null : Math.round(Number(value) * 10) / 10);

/** Audits the jobs whose id starts with `jobPrefix`. Run it once every instance has stopped. */
export async function audit(
  sql: Sql,
  options: {
    jobPrefix: string;
    leaseSeconds: number;
    /**
     * ABANDONED runs the bound does not apply to: claims a frozen process committed only when it
     * resumed, already past their lease, so nobody could see them before (SPEC: "after its holder stopped").
     */
    excludeFromBound?: string[];
    /** The spans of the jobs that were changed (paused, resumed, re-periodised, deleted): audited on these instead of their row. */
    spans?: DueSpan[];
  },
): Promise<AuditReport> {
  const excluded = options.excludeFromBound ?? [];
  const like = likePrefix(options.jobPrefix);
  const boundMs = 2 * options.leaseSeconds * 1000;

  const coverage = await gridCoverage(sql, { jobPrefix: options.jobPrefix, spans: options.spans ?? [] });
  const retries = await auditRetries(sql, { jobPrefix: options.jobPrefix });

  const [dup] = await sql<{ runs: string }[]>`
    select coalesce(sum(n - 1), 0) as runs from (
      select count(*) as n from job_runs where trigger = 'SCHEDULE' and job_id like ${like}
      group by job_id, scheduled_at having count(*) > 1) d`;
  const duplicateExamples = await sql<{ jobId: string; scheduledAt: Date; n: string }[]>`
    select job_id, scheduled_at, count(*) as n from job_runs where trigger = 'SCHEDULE' and job_id like ${like}
    group by job_id, scheduled_at having count(*) > 1 order by scheduled_at limit 10`;

  const statusRows = await sql<{ status: string; n: string }[]>`
    select status, count(*) as n from job_runs where job_id like ${like} group by status order by status`;
  const instanceRows = await sql<{ instance: string | null; n: string }[]>`
    select instance, count(*) as n from job_runs where job_id like ${like} group by instance order by instance`;
  // Every run that started, whatever its trigger: SPEC §3, startedAt ≥ scheduledAt.
  const [misc] = await sql<{ early: string; coalescedRuns: string; coalescedMissed: string; skipped: string }[]>`
    select count(*) filter (where started_at < scheduled_at) as early,
           count(*) filter (where missed > 0) as coalesced_runs,
           coalesce(sum(missed), 0) as coalesced_missed,
           count(*) filter (where status = 'SKIPPED') as skipped
    from job_runs where job_id like ${like}`;
  const early = await sql<{ runId: string; jobId: string; trigger: string; scheduledAt: Date; startedAt: Date }[]>`
    select id::text as run_id, job_id, trigger, scheduled_at, started_at from job_runs
    where job_id like ${like} and started_at < scheduled_at order by id limit 10`;
  const [changeSkipped] = await sql<{ runs: string; dueTimes: string }[]>`
    select count(*) as runs, coalesce(sum(r.missed + 1), 0) as due_times from job_runs r
    where r.job_id like ${like} and r.status = 'SKIPPED'
      and exists (select 1 from log_entries l where l.run_id = r.id and l.level = 'WARNING' and l.details ->> 'change' is not null)`;
  const unlogged = await sql<{ runId: string; jobId: string; scheduledAt: Date }[]>`
    select r.id::text as run_id, r.job_id, r.scheduled_at from job_runs r
    where r.job_id like ${like} and r.status = 'SKIPPED'
      and not exists (select 1 from log_entries l where l.run_id = r.id and l.level = 'WARNING')
    order by r.id`;
  const leftRunning = await sql<{ id: string; jobId: string; instance: string | null }[]>`
    select id::text, job_id, instance from job_runs where status = 'RUNNING' and job_id like ${like} order by id`;

  const [lateness] = await sql<{ n: string; p50: number | null; p99: number | null; max: number | null }[]>`
    select count(*) as n,
           percentile_cont(0.5) within group (order by ms) as p50,
           percentile_cont(0.99) within group (order by ms) as p99,
           max(ms) as max
    from (select extract(epoch from started_at - scheduled_at) * 1000 as ms from job_runs
          where job_id like ${like} and trigger = 'SCHEDULE' and missed = 0 and status <> 'SKIPPED'
            -- A QUEUE_ONE due time waits for the run before it by design.
            and not exists (select 1 from jobs j where j.id = job_runs.job_id and j.overlap = 'QUEUE_ONE')) t`;

  const [abandoned] = await sql<
    {
      total: string;
      leaseExpired: string;
      shutdown: string;
      leaseLost: string;
      replyLost: string;
      n: string;
      p50: number | null;
      p99: number | null;
      max: number | null;
      over: string;
    }[]
  >`
    with a as (
      select error, error like 'lease expired%' and not (id = any(${excluded}::bigint[])) as bounded,
             extract(epoch from finished_at - (lease_expires_at - ${options.leaseSeconds} * interval '1 second')) * 1000 as ms
      from job_runs where status = 'ABANDONED' and job_id like ${like}
    )
    select count(*) as total,
           count(*) filter (where error like 'lease expired%') as lease_expired,
           count(*) filter (where error = 'instance shut down') as shutdown,
           count(*) filter (where error ~ ${LEASE_LOST}) as lease_lost,
           count(*) filter (where error like 'claim reply lost: %') as reply_lost,
           count(ms) filter (where bounded) as n,
           percentile_cont(0.5) within group (order by ms) filter (where bounded) as p50,
           percentile_cont(0.99) within group (order by ms) filter (where bounded) as p99,
           max(ms) filter (where bounded) as max,
           count(*) filter (where bounded and ms > ${boundMs}) as over
    from a`;
  const overBound = await sql<{ runId: string; instance: string | null; ms: number }[]>`
    select id::text as run_id, instance,
           extract(epoch from finished_at - (lease_expires_at - ${options.leaseSeconds} * interval '1 second')) * 1000 as ms
    from job_runs where status = 'ABANDONED' and job_id like ${like} and error like 'lease expired%'
      and not (id = any(${excluded}::bigint[]))
      and finished_at - (lease_expires_at - ${options.leaseSeconds} * interval '1 second') > ${boundMs} * interval '1 millisecond'
    order by ms desc limit 10`;

  const abandonedOther = await sql<{ runId: string; instance: string | null; error: string | null }[]>`
    select id::text as run_id, instance, error from job_runs
    where status = 'ABANDONED' and job_id like ${like}
      and not (coalesce(error, '') like 'lease expired%' or coalesce(error, '') = 'instance shut down'
               or coalesce(error, '') ~ ${LEASE_LOST} or coalesce(error, '') like 'claim reply lost: %')
    order by id limit 10`;

  const stale = await sql<{ runId: string; at: Date; finishedAt: Date; message: string }[]>`
    select r.id::text as run_id, l.at, r.finished_at, l.message
    from job_runs r join log_entries l on l.run_id = r.id
    where r.status = 'ABANDONED' and r.job_id like ${like} and l.at > r.finished_at
      and coalesce(l.details ->> 'status', '') <> 'ABANDONED'
    order by l.at`;

  return {
    jobs: coverage.jobs,
    runs: statusRows.reduce((sum, r) => sum + num(r.n), 0),
    byStatus: Object.fromEntries(statusRows.map((r) => [r.status, num(r.n)])),
    byInstance: Object.fromEntries(instanceRows.map((r) => [r.instance ?? '(none)', num(r.n)])),
    dueTimes: coverage.dueTimes,
    cron: coverage.cron,
    queuedPending: coverage.queuedPending,
    retries,
    duplicates: num(dup!.runs),
    unaccounted: coverage.unaccounted,
    doubleAccounted: coverage.doubleAccounted,
    offGrid: coverage.offGrid,
    leftRunning: leftRunning.length,
    earlyStarts: num(misc!.early),
    coalesced: { runs: num(misc!.coalescedRuns), missed: num(misc!.coalescedMissed) },
    skipped: num(misc!.skipped),
    changeSkipped: { runs: num(changeSkipped!.runs), dueTimes: num(changeSkipped!.dueTimes) },
    skippedUnlogged: unlogged.length,
    unsure: coverage.unsure,
    abandoned: {
      total: num(abandoned!.total),
      leaseExpired: num(abandoned!.leaseExpired),
      shutdown: num(abandoned!.shutdown),
      leaseLost: num(abandoned!.leaseLost),
      replyLost: num(abandoned!.replyLost),
      other:
        num(abandoned!.total) -
        num(abandoned!.leaseExpired) -
        num(abandoned!.shutdown) -
        num(abandoned!.leaseLost) -
        num(abandoned!.replyLost),
      latencyMs: {
        count: num(abandoned!.n),
        p50: numOrNull(abandoned!.p50),
        p99: numOrNull(abandoned!.p99),
        max: numOrNull(abandoned!.max),
      },
      boundMs,
      overBound: num(abandoned!.over),
      excluded: excluded.length,
    },
    staleLogWrites: stale.length,
    latenessMs: { count: num(lateness!.n), p50: numOrNull(lateness!.p50), p99: numOrNull(lateness!.p99), max: numOrNull(lateness!.max) },
    examples: {
      duplicates: duplicateExamples.map((r) => ({ jobId: r.jobId, scheduledAt: iso(r.scheduledAt), count: num(r.n) })),
      ...coverage.examples,
      leftRunning: leftRunning.slice(0, 10),
      earlyStarts: early.map((r) => ({
        runId: r.runId,
        jobId: r.jobId,
        trigger: r.trigger,
        scheduledAt: iso(r.scheduledAt),
        startedAt: iso(r.startedAt),
      })),
      skippedUnlogged: unlogged.slice(0, 10).map((r) => ({ runId: r.runId, jobId: r.jobId, scheduledAt: iso(r.scheduledAt) })),
      staleLogWrites: stale.slice(0, 10).map((r) => ({ runId: r.runId, at: iso(r.at), finishedAt: iso(r.finishedAt), message: r.message })),
      overBound: overBound.map((r) => ({ runId: r.runId, instance: r.instance, latencyMs: Math.round(Number(r.ms)) })),
      abandonedOther,
    },
  };
}
