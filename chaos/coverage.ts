// Due-time coverage, the audit's core (chaos/audit.ts): every due time of a job accounted for
// exactly once by its SCHEDULE runs — the grid points `anchor + k·period` of a period job,
// generated in SQL, and the instants of a cron job's pattern in its zone (SPEC §3b), computed
// here with the service's own pure functions (src/scheduling/cron.ts, daylight saving included)
// and handed to the same SQL — for jobs on a fixed schedule and for spans a caller knows (the
// changed jobs' spans that chaos/change-spans.ts rebuilds, or a test's own).
import { cronDueBetween } from '../src/scheduling/cron.ts';
import { firstDueAfter, ruleOf } from '../src/scheduling/schedule.ts';
import type { AuditReport, Sql } from './audit.ts';

export const num = (value: unknown): number => Number(value ?? 0);
export const iso = (value: Date | string) => new Date(value).toISOString();
/** A LIKE pattern for ids that start with `prefix`. */
export const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

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

/**
 * A stretch of a cron job's due times: the instants of `cron` in `timeZone` from `firstDue`
 * through `lastDue`, both inclusive (brackets as in GridSpan). A run there accounts for its due
 * time and for the `missed` instants of the pattern immediately before it.
 */
export interface CronSpan {
  jobId: string;
  firstDue: Date;
  lastDue: Date;
  cron: string;
  timeZone: string;
  unsureAfter?: Date | null;
  unsureUntil?: Date | null;
}

/** What the coverage audits: a stretch of a period job's grid or of a cron job's instants. A job's spans are all of one kind. */
export type DueSpan = GridSpan | CronSpan;

const isCronSpan = (span: DueSpan): span is CronSpan => 'cron' in span;

export interface GridCoverage {
  /** Jobs audited: those of the prefix, and those the spans name. */
  jobs: number;
  /** Grid points that had to be accounted for (those in a bracket only when they were). */
  dueTimes: number;
  /** Of those, the cron jobs and their due times. */
  cron: { jobs: number; dueTimes: number };
  /** QUEUE_ONE due times still waiting in jobs.queued_due_at (they and their queued_missed count as accounted: their run comes next). */
  queuedPending: number;
  unaccounted: number;
  doubleAccounted: number;
  offGrid: number;
  /** Grid points inside a bracket (see GridSpan), and how many of them were left out, legitimately. */
  unsure: { dueTimes: number; leftOut: number };
  examples: Pick<AuditReport['examples'], 'unaccounted' | 'doubleAccounted' | 'offGrid'>;
}

/**
 * Checks that every due time is accounted for exactly once by the SCHEDULE runs of its job: for
 * the jobs of a prefix, each on its fixed schedule (a period job's grid, anchor + period through
 * next_due_at − period; a cron job's instants, from its first due time to before next_due_at),
 * and for the spans given (their jobs are left out of the prefix's). A run accounts for its
 * scheduled_at and, when that is a due time of a span, for the `missed` due times before it (on a
 * grid scheduled_at − k·period, on a cron the pattern's instants immediately before it); runs of
 * the audited jobs that stand for no due time are off the grid. A QUEUE_ONE due time still
 * waiting (jobs.queued_due_at, with queued_missed) stands for its due times as its run will.
 */
export async function gridCoverage(sql: Sql, of: { jobPrefix?: string; spans?: DueSpan[] }): Promise<GridCoverage> {
  const given = of.spans ?? [];
  const gridGiven = given.filter((s): s is GridSpan => !isCronSpan(s));
  const named = [...new Set(given.map((s) => s.jobId))];
  const cronSpans = [...given.filter(isCronSpan), ...(of.jobPrefix === undefined ? [] : await cronSpansOfPrefix(sql, of.jobPrefix, named))];
  const cron = await listCronDueTimes(sql, cronSpans);
  const both = cron.jobs.filter((id) => gridGiven.some((s) => s.jobId === id));
  if (both.length > 0) throw new Error(`gridCoverage: a job's spans are all of one kind (grid and cron spans for ${both.join(', ')})`);

  const isoOrNull = (d: Date | null | undefined) => (d ? d.toISOString() : null);
  const explicit = sql`
    select n::int as span, job_id, period_ms * interval '1 millisecond' as p, first_due, last_due, unsure_after, unsure_until
    from unnest(${gridGiven.map((s) => s.jobId)}::text[], ${gridGiven.map((s) => s.firstDue.toISOString())}::timestamptz[],
                ${gridGiven.map((s) => s.lastDue.toISOString())}::timestamptz[], ${gridGiven.map((s) => s.periodMs)}::float8[],
                ${gridGiven.map((s) => isoOrNull(s.unsureAfter)) as string[]}::timestamptz[], ${gridGiven.map((s) => isoOrNull(s.unsureUntil)) as string[]}::timestamptz[])
         with ordinality as s(job_id, first_due, last_due, period_ms, unsure_after, unsure_until, n)`;
  const spans =
    of.jobPrefix === undefined
      ? explicit
      : sql`
          ${explicit}
          union all
          select ${gridGiven.length}::int + (row_number() over (order by id))::int, id, period_seconds * interval '1 second',
                 anchor_at + period_seconds * interval '1 second', next_due_at - period_seconds * interval '1 second',
                 null::timestamptz, null::timestamptz
          from jobs where id like ${likePrefix(of.jobPrefix)} and cron is null and not (id = any(${named}::text[]))`;

  // Every due time of every span — grid points generated here, cron instants listed — joined with
  // the due times runs stand for (a coalesced run stands for itself and the `missed` due times of
  // its span before it; the cron ones listed with their runs): the one definition both queries
  // use. A point two spans share (grids that cross) counts once.
  const isoMs = (ms: number) => new Date(ms).toISOString();
  const counted = sql`
    with j as (${spans}),
    points as (
      select j.job_id, g.due, min(j.span) as span, false as cron,
             bool_and(j.unsure_after is not null and g.due > j.unsure_after) as unsure_end,
             bool_and(j.unsure_until is not null and g.due <= j.unsure_until) as unsure_start
      from j cross join lateral generate_series(j.first_due, j.last_due, j.p) as g(due)
      group by j.job_id, g.due
      union all
      select job_id, due, span, true, unsure_end, unsure_start
      from unnest(${cron.points.map((p) => p.jobId)}::text[], ${cron.points.map((p) => isoMs(p.dueMs))}::timestamptz[],
                  ${cron.points.map((p) => p.span)}::int[],
                  -- As text: postgres.js sends no boolean arrays.
                  ${cron.points.map((p) => String(p.unsureEnd))}::text[]::boolean[],
                  ${cron.points.map((p) => String(p.unsureStart))}::text[]::boolean[]) as e(job_id, due, span, unsure_end, unsure_start)
    ),
    runs as (
      select r.id::text as id, r.job_id, r.scheduled_at, r.missed from job_runs r
      where r.trigger = 'SCHEDULE' and r.job_id in (select job_id from j)
      union all
      select 'queued ' || q.id, q.id, q.queued_due_at, q.queued_missed from jobs q
      where q.queued_due_at is not null and q.id in (select job_id from j)
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
      union all
      select job_id, run_id, due
      from unnest(${cron.covered.map((c) => c.jobId)}::text[], ${cron.covered.map((c) => c.runId)}::text[],
                  ${cron.covered.map((c) => isoMs(c.dueMs))}::timestamptz[]) as c(job_id, run_id, due)
    ),
    tallied as (
      select coalesce(g.job_id, c.job_id) as job_id, coalesce(g.due, c.due) as due, g.span, coalesce(g.cron, false) as cron,
             coalesce(g.unsure_end, false) as unsure_end, coalesce(g.unsure_start, false) as unsure_start, count(c.run_id) as n
      from points g full join covered c on c.job_id = g.job_id and c.due = g.due
      group by 1, 2, 3, 4, 5, 6
    ),
    counts as (
      select job_id, due, span is not null as on_grid, cron, n, unsure_end or unsure_start as unsure,
             -- Left out legitimately: at the start of a span, or at its end after every accounted point.
             n = 0 and (unsure_start or (unsure_end and due > coalesce(max(due) filter (where n > 0) over (partition by span), '-infinity'))) as left_out
      from tallied
    )`;

  const [totals] = await sql<
    {
      jobs: string;
      dueTimes: string;
      cronDueTimes: string;
      queued: string;
      unaccounted: string;
      doubleAccounted: string;
      offGrid: string;
      unsure: string;
      leftOut: string;
    }[]
  >`
    ${counted}
    select (select count(distinct job_id) from j) as jobs,
           count(*) filter (where on_grid and not left_out) as due_times,
           count(*) filter (where on_grid and not left_out and cron) as cron_due_times,
           (select count(*) from runs where id like 'queued %') as queued,
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
    jobs: num(totals!.jobs) + cron.jobs.length,
    dueTimes: num(totals!.dueTimes),
    cron: { jobs: cron.jobs.length, dueTimes: num(totals!.cronDueTimes) },
    queuedPending: num(totals!.queued) + cron.queued,
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

/**
 * The spans of the prefix's cron jobs not named otherwise, each on its fixed schedule: from its
 * first due time (the first instant after its creation, or at or after its startAt: as the
 * service decides it, src/scheduling/schedule.ts) to the last instant before next_due_at (through
 * endAt when none is left).
 */
async function cronSpansOfPrefix(sql: Sql, prefix: string, named: string[]): Promise<CronSpan[]> {
  const rows = await sql<
    {
      id: string;
      periodSeconds: number | null;
      cron: string;
      timeZone: string | null;
      anchorAt: Date;
      createdAt: Date;
      endAt: Date | null;
      nextDueAt: Date | null;
    }[]
  >`
    select id, period_seconds, cron, time_zone, anchor_at, created_at, end_at, next_due_at from jobs
    where id like ${likePrefix(prefix)} and cron is not null and not (id = any(${named}::text[]))
    order by id`;
  return rows.map((row) => {
    const rule = ruleOf(row);
    const first = firstDueAfter(rule, Math.max(row.createdAt.getTime(), rule.anchorMs - 1)) ?? row.createdAt.getTime();
    const last = row.nextDueAt ? row.nextDueAt.getTime() - 1 : (rule.endMs ?? first - 1);
    return { jobId: row.id, firstDue: new Date(first), lastDue: new Date(last), cron: row.cron, timeZone: rule.timeZone ?? 'UTC' };
  });
}

/** A cron due time to account for, with the flags the SQL derives for a grid point of a span. */
interface ListedPoint {
  jobId: string;
  dueMs: number;
  /** Negative, so never a grid span's number: −1 for the first cron span. */
  span: number;
  unsureEnd: boolean;
  unsureStart: boolean;
}

/**
 * The cron spans' due times (computed with the service's pure functions) and the due times their
 * jobs' SCHEDULE runs stand for: a run on a due time of a span stands for it and for the `missed`
 * instants of the pattern immediately before it; any other run for its scheduled_at alone (off
 * the grid). A QUEUE_ONE due time still waiting counts as a run.
 */
async function listCronDueTimes(
  sql: Sql,
  spans: CronSpan[],
): Promise<{ jobs: string[]; points: ListedPoint[]; covered: { jobId: string; runId: string; dueMs: number }[]; queued: number }> {
  const jobs = [...new Set(spans.map((s) => s.jobId))];
  const points = new Map<string, ListedPoint>();
  const key = (jobId: string, ms: number) => `${jobId}\u0000${ms}`;
  spans.forEach((span, i) => {
    const spec = { cron: span.cron, timeZone: span.timeZone };
    for (const due of cronDueBetween(spec, span.firstDue.getTime(), span.lastDue.getTime(), Number.MAX_SAFE_INTEGER)) {
      const unsureEnd = span.unsureAfter != null && due.atMs > span.unsureAfter.getTime();
      const unsureStart = span.unsureUntil != null && due.atMs <= span.unsureUntil.getTime();
      const seen = points.get(key(span.jobId, due.atMs));
      if (seen) {
        // Shared by two spans: counted once, in a bracket only when it is in both.
        seen.unsureEnd &&= unsureEnd;
        seen.unsureStart &&= unsureStart;
      } else points.set(key(span.jobId, due.atMs), { jobId: span.jobId, dueMs: due.atMs, span: -(i + 1), unsureEnd, unsureStart });
    }
  });
  if (jobs.length === 0) return { jobs, points: [], covered: [], queued: 0 };
  const runs = await sql<{ id: string; jobId: string; scheduledAt: Date; missed: number }[]>`
    select id::text, job_id, scheduled_at, missed from job_runs where trigger = 'SCHEDULE' and job_id = any(${jobs}::text[])
    union all
    select 'queued ' || id, id, queued_due_at, queued_missed from jobs where queued_due_at is not null and id = any(${jobs}::text[])`;
  const covered = runs.flatMap((run) => {
    const dueMs = run.scheduledAt.getTime();
    const home = points.get(key(run.jobId, dueMs));
    const span = home ? spans[-home.span - 1]! : null;
    const before = span ? cronDueBefore({ cron: span.cron, timeZone: span.timeZone }, dueMs, run.missed) : [];
    return [dueMs, ...before].map((ms) => ({ jobId: run.jobId, runId: run.id, dueMs: ms }));
  });
  return { jobs, points: [...points.values()], covered, queued: runs.filter((r) => r.id.startsWith('queued ')).length };
}

/** The `count` instants of a cron pattern immediately before `beforeMs` (fewer when it has fewer within 400 days). */
function cronDueBefore(spec: { cron: string; timeZone: string }, beforeMs: number, count: number): number[] {
  if (count <= 0) return [];
  const reach = 400 * 86_400_000;
  for (let window = 60_000; ; window = Math.min(reach, window * 24)) {
    const found = cronDueBetween(spec, beforeMs - window, beforeMs - 1, Number.MAX_SAFE_INTEGER);
    if (found.length >= count || window === reach) return found.slice(-count).map((due) => due.atMs);
  }
}
