// The audit of a chaos run: SQL over the database after the instances have stopped, checking
// SPEC §3 "exactly once per due time" job by job.
//
// For each audited job (created without startAt and never changed, so its grid is fixed):
// the grid points run from its first due time, anchor + period, to its last claimed due time,
// next_due_at − period. A SCHEDULE run accounts for its scheduled_at and for the `missed` grid
// points before it (scheduled_at − k·period, k = 1..missed) — SKIPPED and ABANDONED runs
// included. Every grid point must be accounted for exactly once. `gridCoverage` applies the same
// definition to spans of grid a caller knows (a job whose grid changed, or that was paused or
// deleted).
import postgres from 'postgres';

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
  /** Runs that started before their due time. */
  earlyStarts: number;
  coalesced: { runs: number; missed: number };
  skipped: number;
  abandoned: AbandonedReport;
  /** Log entries of ABANDONED runs written after the run was marked (other than the marking entry itself). */
  staleLogWrites: number;
  /** started_at − scheduled_at of on-time runs (missed = 0, not SKIPPED), ms. */
  latenessMs: Percentiles;
  /** A few examples of each failure, for diagnosis. */
  examples: {
    duplicates: { jobId: string; scheduledAt: string; count: number }[];
    unaccounted: { jobId: string; dueAt: string }[];
    doubleAccounted: { jobId: string; dueAt: string; count: number }[];
    offGrid: { jobId: string; dueAt: string }[];
    leftRunning: { id: string; jobId: string; instance: string | null }[];
    staleLogWrites: { runId: string; at: string; finishedAt: string; message: string }[];
    overBound: { runId: string; instance: string | null; latencyMs: number }[];
    abandonedOther: { runId: string; instance: string | null; error: string | null }[];
  };
}

const num = (value: unknown): number => Number(value ?? 0);
const numOrNull = (value: unknown): number | null => (value == null ? null : Math.round(Number(value) * 10) / 10);
const iso = (value: Date | string) => new Date(value).toISOString();

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
  },
): Promise<AuditReport> {
  const excluded = options.excludeFromBound ?? [];
  const like = likePrefix(options.jobPrefix);
  const boundMs = 2 * options.leaseSeconds * 1000;

  const coverage = await gridCoverage(sql, { jobPrefix: options.jobPrefix });

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
  const [misc] = await sql<{ early: string; coalescedRuns: string; coalescedMissed: string; skipped: string }[]>`
    select count(*) filter (where started_at < scheduled_at and trigger = 'SCHEDULE') as early,
           count(*) filter (where missed > 0) as coalesced_runs,
           coalesce(sum(missed), 0) as coalesced_missed,
           count(*) filter (where status = 'SKIPPED') as skipped
    from job_runs where job_id like ${like}`;
  const leftRunning = await sql<{ id: string; jobId: string; instance: string | null }[]>`
    select id::text, job_id, instance from job_runs where status = 'RUNNING' and job_id like ${like} order by id`;

  const [lateness] = await sql<{ n: string; p50: number | null; p99: number | null; max: number | null }[]>`
    select count(*) as n,
           percentile_cont(0.5) within group (order by ms) as p50,
           percentile_cont(0.99) within group (order by ms) as p99,
           max(ms) as max
    from (select extract(epoch from started_at - scheduled_at) * 1000 as ms from job_runs
          where job_id like ${like} and trigger = 'SCHEDULE' and missed = 0 and status <> 'SKIPPED') t`;

  const [abandoned] = await sql<{
    total: string; leaseExpired: string; shutdown: string; n: string;
    p50: number | null; p99: number | null; max: number | null; over: string;
  }[]>`
    with a as (
      select error, error like 'lease expired%' and not (id = any(${excluded}::bigint[])) as bounded,
             extract(epoch from finished_at - (lease_expires_at - ${options.leaseSeconds} * interval '1 second')) * 1000 as ms
      from job_runs where status = 'ABANDONED' and job_id like ${like}
    )
    select count(*) as total,
           count(*) filter (where error like 'lease expired%') as lease_expired,
           count(*) filter (where error = 'instance shut down') as shutdown,
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
      and not (coalesce(error, '') like 'lease expired%' or coalesce(error, '') = 'instance shut down')
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
    duplicates: num(dup!.runs),
    unaccounted: coverage.unaccounted,
    doubleAccounted: coverage.doubleAccounted,
    offGrid: coverage.offGrid,
    leftRunning: leftRunning.length,
    earlyStarts: num(misc!.early),
    coalesced: { runs: num(misc!.coalescedRuns), missed: num(misc!.coalescedMissed) },
    skipped: num(misc!.skipped),
    abandoned: {
      total: num(abandoned!.total),
      leaseExpired: num(abandoned!.leaseExpired),
      shutdown: num(abandoned!.shutdown),
      other: num(abandoned!.total) - num(abandoned!.leaseExpired) - num(abandoned!.shutdown),
      latencyMs: { count: num(abandoned!.n), p50: numOrNull(abandoned!.p50), p99: numOrNull(abandoned!.p99), max: numOrNull(abandoned!.max) },
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
      staleLogWrites: stale.slice(0, 10).map((r) => ({ runId: r.runId, at: iso(r.at), finishedAt: iso(r.finishedAt), message: r.message })),
      overBound: overBound.map((r) => ({ runId: r.runId, instance: r.instance, latencyMs: Math.round(Number(r.ms)) })),
      abandonedOther,
    },
  };
}

/**
 * A stretch of one job's grid that must be accounted for: every `firstDue + k·period` up to
 * `lastDue` (none when `lastDue` < `firstDue`). A job may have several, one per grid it had
 * while enabled; they must not overlap.
 */
export interface GridSpan {
  jobId: string;
  firstDue: Date;
  lastDue: Date;
  periodMs: number;
}

export interface GridCoverage {
  /** Jobs audited: those of the prefix, or those the spans name. */
  jobs: number;
  dueTimes: number;
  unaccounted: number;
  doubleAccounted: number;
  offGrid: number;
  examples: Pick<AuditReport['examples'], 'unaccounted' | 'doubleAccounted' | 'offGrid'>;
}

/**
 * Checks that every grid point is accounted for exactly once by the SCHEDULE runs of its job:
 * for the jobs of a prefix, each on its fixed grid (anchor + period through next_due_at −
 * period), or for the spans given. A run accounts for its scheduled_at and, when that lies in a
 * span, for the `missed` grid points of that span before it; runs of the audited jobs that stand
 * for no grid point are off the grid.
 */
export async function gridCoverage(sql: Sql, of: { jobPrefix: string } | { spans: GridSpan[] }): Promise<GridCoverage> {
  const spans =
    'jobPrefix' in of
      ? sql`
          select id as job_id, period_seconds * interval '1 second' as p,
                 anchor_at + period_seconds * interval '1 second' as first_due,
                 next_due_at - period_seconds * interval '1 second' as last_due
          from jobs where id like ${likePrefix(of.jobPrefix)}`
      : sql`
          select job_id, period_ms * interval '1 millisecond' as p, first_due, last_due
          from unnest(${of.spans.map((s) => s.jobId)}::text[], ${of.spans.map((s) => s.firstDue.toISOString())}::timestamptz[],
                      ${of.spans.map((s) => s.lastDue.toISOString())}::timestamptz[], ${of.spans.map((s) => s.periodMs)}::float8[])
               as s(job_id, first_due, last_due, period_ms)`;

  // Every grid point of every span, joined with the due times runs stand for (a coalesced run
  // stands for itself and its `missed` predecessors): the one definition both queries use.
  const counted = sql`
    with j as (${spans}),
    grid as (
      select j.job_id, g.due from j cross join lateral generate_series(j.first_due, j.last_due, j.p) as g(due)
    ),
    covered as (
      select r.job_id, r.id as run_id, r.scheduled_at - k * coalesce(s.p, interval '0') as due
      from job_runs r
      left join lateral (
        select j.p from j where j.job_id = r.job_id and r.scheduled_at between j.first_due and j.last_due limit 1
      ) s on true
      cross join lateral generate_series(0, case when s.p is null then 0 else r.missed end) as k
      where r.trigger = 'SCHEDULE' and r.job_id in (select job_id from j)
    ),
    counts as (
      select coalesce(g.job_id, c.job_id) as job_id, coalesce(g.due, c.due) as due, bool_or(g.due is not null) as on_grid,
             count(c.run_id) as n
      from grid g full join covered c on c.job_id = g.job_id and c.due = g.due
      group by 1, 2
    )`;

  const [totals] = await sql<{ jobs: string; dueTimes: string; unaccounted: string; doubleAccounted: string; offGrid: string }[]>`
    ${counted}
    select (select count(distinct job_id) from j) as jobs,
           count(*) filter (where on_grid) as due_times,
           count(*) filter (where on_grid and n = 0) as unaccounted,
           count(*) filter (where on_grid and n > 1) as double_accounted,
           count(*) filter (where not on_grid) as off_grid
    from counts`;

  const rows = await sql<{ kind: string; jobId: string; dueAt: Date; n: string }[]>`
    ${counted},
    kinds as (
      select case when not on_grid then 'offGrid' when n = 0 then 'unaccounted' else 'doubleAccounted' end as kind, job_id, due, n
      from counts where not on_grid or n <> 1
    )
    select kind, job_id, due as due_at, n from kinds order by kind, due, job_id`;
  const pick = (kind: string) => rows.filter((r) => r.kind === kind).slice(0, 10);

  return {
    jobs: num(totals!.jobs),
    dueTimes: num(totals!.dueTimes),
    unaccounted: num(totals!.unaccounted),
    doubleAccounted: num(totals!.doubleAccounted),
    offGrid: num(totals!.offGrid),
    examples: {
      unaccounted: pick('unaccounted').map((r) => ({ jobId: r.jobId, dueAt: iso(r.dueAt) })),
      doubleAccounted: pick('doubleAccounted').map((r) => ({ jobId: r.jobId, dueAt: iso(r.dueAt), count: num(r.n) })),
      offGrid: pick('offGrid').map((r) => ({ jobId: r.jobId, dueAt: iso(r.dueAt) })),
    },
  };
}

/** A LIKE pattern for ids that start with `prefix`. */
const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * Runs a frozen process had claimed when it was frozen, in a transaction it committed only
 * after it resumed: started (claimed) before the freeze, not RUNNING in the database during it,
 * and marked ABANDONED after the resume.
 */
export async function lateClaims(sql: Sql, instance: string, frozenAt: Date, resumedAt: Date, heldIds: string[]): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    select id::text from job_runs
    where instance = ${instance} and status = 'ABANDONED' and started_at <= ${frozenAt}
      and finished_at >= ${resumedAt} and not (id = any(${heldIds}::bigint[]))
    order by id`;
  return rows.map((r) => r.id);
}

/** The runs an instance holds right now (status RUNNING), for the checks of a kill or a freeze. */
export async function runningRunsOf(sql: Sql, instance: string): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`select id::text from job_runs where status = 'RUNNING' and instance = ${instance} order by id`;
  return rows.map((r) => r.id);
}

export interface HeldRun {
  id: string;
  status: string;
  error: string | null;
  finishedAt: Date | null;
  leaseExpiresAt: Date | null;
  /** finished_at − (lease_expires_at − LEASE_SECONDS), for an ABANDONED run. */
  abandonLatencyMs: number | null;
}

/** The fate of the given runs. */
export async function runsById(sql: Sql, ids: string[], leaseSeconds: number): Promise<HeldRun[]> {
  if (ids.length === 0) return [];
  return (
    await sql<(Omit<HeldRun, 'abandonLatencyMs'> & { ms: number | null })[]>`
      select id::text, status, error, finished_at, lease_expires_at,
             case when status = 'ABANDONED'
                  then extract(epoch from finished_at - (lease_expires_at - ${leaseSeconds} * interval '1 second')) * 1000 end as ms
      from job_runs where id = any(${ids}::bigint[]) order by id`
  ).map(({ ms, ...run }) => ({ ...run, abandonLatencyMs: ms == null ? null : Math.round(Number(ms)) }));
}

/**
 * For each instance: how long after `since` (database time) it started its first run, in ms;
 * null when it started none. "Resumed" after a database outage means claiming and running again.
 */
export async function resumeLatencies(sql: Sql, instances: string[], since: Date): Promise<Record<string, number | null>> {
  const rows = await sql<{ instance: string; ms: number | null }[]>`
    select i as instance,
           (select extract(epoch from min(started_at) - ${since}::timestamptz) * 1000
            from job_runs where instance = i and started_at >= ${since}::timestamptz) as ms
    from unnest(${instances}::text[]) as i`;
  return Object.fromEntries(rows.map((r) => [r.instance, r.ms == null ? null : Math.round(Number(r.ms))]));
}

/** Progress while a scenario runs: runs so far and runs in progress. */
export async function progress(sql: Sql, jobPrefix: string): Promise<{ runs: number; running: number; last10s: number }> {
  const [row] = await sql<{ runs: string; running: string; last10s: string }[]>`
    select count(*) as runs, count(*) filter (where status = 'RUNNING') as running,
           count(*) filter (where started_at > clock_timestamp() - interval '10 seconds') as last10s
    from job_runs where job_id like ${`${jobPrefix}%`}`;
  return { runs: num(row!.runs), running: num(row!.running), last10s: num(row!.last10s) };
}
