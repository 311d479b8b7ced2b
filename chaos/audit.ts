// The audit of a chaos run: SQL over the database after the instances have stopped, checking
// SPEC §3 "exactly once per due time" job by job.
//
// For each audited job never changed (created without startAt, so its grid is fixed): the grid
// points run from its first due time, anchor + period, to its last claimed due time,
// next_due_at − period. A SCHEDULE run accounts for its scheduled_at and for the `missed` grid
// points before it (scheduled_at − k·period, k = 1..missed) — SKIPPED and ABANDONED runs
// included. Every grid point must be accounted for exactly once. `gridCoverage` applies the same
// definition to spans of grid a caller knows: the jobs the harness paused, resumed, re-periodised
// or deleted, whose spans chaos/changes.ts rebuilds from the database's audit trail.
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
  /** started_at − scheduled_at of on-time runs (missed = 0, not SKIPPED), ms. */
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

const num = (value: unknown): number => Number(value ?? 0);
/** The error of a run whose holder could not renew its lease in time and aborted its call itself (src/scheduling/scheduler.ts). */
const LEASE_LOST = '^lease lost: could not renew within [0-9]+ s$';
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
    /** The grid spans of the jobs that were changed (paused, resumed, re-periodised, deleted): audited on these instead of their row. */
    spans?: GridSpan[];
  },
): Promise<AuditReport> {
  const excluded = options.excludeFromBound ?? [];
  const like = likePrefix(options.jobPrefix);
  const boundMs = 2 * options.leaseSeconds * 1000;

  const coverage = await gridCoverage(sql, { jobPrefix: options.jobPrefix, spans: options.spans ?? [] });

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
          where job_id like ${like} and trigger = 'SCHEDULE' and missed = 0 and status <> 'SKIPPED') t`;

  const [abandoned] = await sql<{
    total: string; leaseExpired: string; shutdown: string; leaseLost: string; replyLost: string; n: string;
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
        num(abandoned!.total) - num(abandoned!.leaseExpired) - num(abandoned!.shutdown) - num(abandoned!.leaseLost) - num(abandoned!.replyLost),
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
      earlyStarts: early.map((r) => ({ runId: r.runId, jobId: r.jobId, trigger: r.trigger, scheduledAt: iso(r.scheduledAt), startedAt: iso(r.startedAt) })),
      skippedUnlogged: unlogged.slice(0, 10).map((r) => ({ runId: r.runId, jobId: r.jobId, scheduledAt: iso(r.scheduledAt) })),
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
 *
 * Where a span's boundary is known only to lie in a bracket (the instant a change decided what
 * was already due, between its request and its answer), the grid points inside the bracket may
 * be accounted for or not, never twice: those after `unsureAfter` (through `lastDue`) may be
 * left out, but only after every accounted one (what a change leaves behind is everything due
 * by one instant, so the accounted points of a span come first); those at or before
 * `unsureUntil` may be left out at the start of a span.
 */
export interface GridSpan {
  jobId: string;
  firstDue: Date;
  lastDue: Date;
  periodMs: number;
  unsureAfter?: Date | null;
  unsureUntil?: Date | null;
}

export interface GridCoverage {
  /** Jobs audited: those of the prefix, and those the spans name. */
  jobs: number;
  /** Grid points that had to be accounted for (those in a bracket only when they were). */
  dueTimes: number;
  unaccounted: number;
  doubleAccounted: number;
  offGrid: number;
  /** Grid points inside a bracket (see GridSpan), and how many of them were left out, legitimately. */
  unsure: { dueTimes: number; leftOut: number };
  examples: Pick<AuditReport['examples'], 'unaccounted' | 'doubleAccounted' | 'offGrid'>;
}

/**
 * Checks that every grid point is accounted for exactly once by the SCHEDULE runs of its job:
 * for the jobs of a prefix, each on its fixed grid (anchor + period through next_due_at −
 * period), and for the spans given (their jobs are left out of the prefix's). A run accounts for
 * its scheduled_at and, when that is a grid point of a span, for the `missed` grid points of
 * that span before it; runs of the audited jobs that stand for no grid point are off the grid.
 */
export async function gridCoverage(sql: Sql, of: { jobPrefix?: string; spans?: GridSpan[] }): Promise<GridCoverage> {
  const given = of.spans ?? [];
  const named = [...new Set(given.map((s) => s.jobId))];
  const isoOrNull = (d: Date | null | undefined) => (d ? d.toISOString() : null);
  const explicit = sql`
    select n::int as span, job_id, period_ms * interval '1 millisecond' as p, first_due, last_due, unsure_after, unsure_until
    from unnest(${given.map((s) => s.jobId)}::text[], ${given.map((s) => s.firstDue.toISOString())}::timestamptz[],
                ${given.map((s) => s.lastDue.toISOString())}::timestamptz[], ${given.map((s) => s.periodMs)}::float8[],
                ${given.map((s) => isoOrNull(s.unsureAfter)) as string[]}::timestamptz[], ${given.map((s) => isoOrNull(s.unsureUntil)) as string[]}::timestamptz[])
         with ordinality as s(job_id, first_due, last_due, period_ms, unsure_after, unsure_until, n)`;
  const spans =
    of.jobPrefix === undefined
      ? explicit
      : sql`
          ${explicit}
          union all
          select ${given.length}::int + (row_number() over (order by id))::int, id, period_seconds * interval '1 second',
                 anchor_at + period_seconds * interval '1 second', next_due_at - period_seconds * interval '1 second',
                 null::timestamptz, null::timestamptz
          from jobs where id like ${likePrefix(of.jobPrefix)} and not (id = any(${named}::text[]))`;

  // Every grid point of every span, joined with the due times runs stand for (a coalesced run
  // stands for itself and the `missed` points of its span before it): the one definition both
  // queries use. A point two spans share (grids that cross) counts once.
  const counted = sql`
    with j as (${spans}),
    points as (
      select j.job_id, g.due, min(j.span) as span,
             bool_and(j.unsure_after is not null and g.due > j.unsure_after) as unsure_end,
             bool_and(j.unsure_until is not null and g.due <= j.unsure_until) as unsure_start
      from j cross join lateral generate_series(j.first_due, j.last_due, j.p) as g(due)
      group by j.job_id, g.due
    ),
    runs as (
      select r.id, r.job_id, r.scheduled_at, r.missed from job_runs r
      where r.trigger = 'SCHEDULE' and r.job_id in (select job_id from j)
    ),
    home as (
      select r.id, j.p from runs r
      join points g on g.job_id = r.job_id and g.due = r.scheduled_at
      join j on j.span = g.span
    ),
    covered as (
      select r.job_id, r.id as run_id, r.scheduled_at - k * coalesce(h.p, interval '0') as due
      from runs r
      left join home h on h.id = r.id
      cross join lateral generate_series(0, case when h.p is null then 0 else r.missed end) as k
    ),
    tallied as (
      select coalesce(g.job_id, c.job_id) as job_id, coalesce(g.due, c.due) as due, g.span,
             coalesce(g.unsure_end, false) as unsure_end, coalesce(g.unsure_start, false) as unsure_start, count(c.run_id) as n
      from points g full join covered c on c.job_id = g.job_id and c.due = g.due
      group by 1, 2, 3, 4, 5
    ),
    counts as (
      select job_id, due, span is not null as on_grid, n, unsure_end or unsure_start as unsure,
             -- Left out legitimately: at the start of a span, or at its end after every accounted point.
             n = 0 and (unsure_start or (unsure_end and due > coalesce(max(due) filter (where n > 0) over (partition by span), '-infinity'))) as left_out
      from tallied
    )`;

  const [totals] = await sql<{
    jobs: string; dueTimes: string; unaccounted: string; doubleAccounted: string; offGrid: string; unsure: string; leftOut: string;
  }[]>`
    ${counted}
    select (select count(distinct job_id) from j) as jobs,
           count(*) filter (where on_grid and not left_out) as due_times,
           count(*) filter (where on_grid and n = 0 and not left_out) as unaccounted,
           count(*) filter (where on_grid and n > 1) as double_accounted,
           count(*) filter (where not on_grid) as off_grid,
           count(*) filter (where on_grid and unsure) as unsure,
           count(*) filter (where on_grid and left_out) as left_out
    from counts`;

  const rows = await sql<{ kind: string; jobId: string; dueAt: Date; n: string }[]>`
    ${counted},
    kinds as (
      select case when not on_grid then 'offGrid' when n = 0 then 'unaccounted' else 'doubleAccounted' end as kind, job_id, due, n
      from counts where not on_grid or n > 1 or (n = 0 and not left_out)
    )
    select kind, job_id, due as due_at, n from kinds order by kind, due, job_id`;
  const pick = (kind: string) => rows.filter((r) => r.kind === kind).slice(0, 10);

  return {
    jobs: num(totals!.jobs),
    dueTimes: num(totals!.dueTimes),
    unaccounted: num(totals!.unaccounted),
    doubleAccounted: num(totals!.doubleAccounted),
    offGrid: num(totals!.offGrid),
    unsure: { dueTimes: num(totals!.unsure), leftOut: num(totals!.leftOut) },
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
