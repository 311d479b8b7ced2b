// Grid coverage, the audit's core (chaos/audit.ts): every grid point of a job accounted for
// exactly once by its SCHEDULE runs, for jobs on a fixed grid and for spans of grid a caller
// knows (the changed jobs' spans that chaos/change-spans.ts rebuilds, or a test's own).
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

  const [totals] = await sql<
    {
      jobs: string;
      dueTimes: string;
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
