// What the harness reads of the runs while a scenario goes on and of the runs its faults hit:
// the runs an instance holds, what became of them, late claims of a frozen process, how soon the
// instances ran jobs again after an outage, and progress.
import type { Sql } from './audit.ts';
import { num } from './coverage.ts';

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
