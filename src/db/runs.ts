import type { Queryable, Sql } from './client.ts';
import { insertLogEntries, type NewLogEntry } from './log.ts';
import type { ClaimStatus, EndStatus, JobRow, LogRow, RunRow, RunStatus } from './rows.ts';

/** A job as the claim sees it: the job and whether a run of it is in progress. */
export interface DueJob extends JobRow {
  busy: boolean;
}

export interface NewScheduledRun {
  jobId: string;
  scheduledAt: Date;
  missed: number;
  status: ClaimStatus;
  nextDueAt: Date;
}

export interface Holder {
  instance: string;
  /** This process's lease token: the fencing token of every run it holds. */
  token: string;
}

export interface Claimed {
  run: RunRow;
  job: JobRow;
  entries: LogRow[];
}

export interface ClaimResult {
  claimed: Claimed[];
  /** WARNING entries of due times whose run was not inserted: a run for that due time existed already. */
  clashes: LogRow[];
}

/**
 * Claims due jobs in one transaction: locks up to `limit` due, enabled jobs (skipping rows
 * another instance holds), lets `decide` turn each into a run, advances each job's next due
 * time, inserts the runs and the log entries `describe` gives for them. The job row lock plus
 * the unique (job, due time) key make the claim exactly-once across instances; the decisions
 * are the caller's pure functions. A planned run whose key is taken already is not inserted,
 * and `describeClash` says so in the log.
 */
export async function claimDueJobs(
  sql: Sql,
  args: { now: Date; limit: number; holder: Holder; leaseMs: number },
  decide: (job: DueJob) => NewScheduledRun,
  describe: (run: RunRow, job: JobRow) => NewLogEntry[],
  describeClash: (planned: NewScheduledRun) => NewLogEntry,
): Promise<ClaimResult> {
  return sql.begin(async (tx) => {
    const locked = await tx<JobRow[]>`
      select * from jobs
      where enabled and next_due_at <= ${args.now}
      order by next_due_at
      limit ${args.limit}
      for update skip locked`;
    if (locked.length === 0) return { claimed: [], clashes: [] };
    // Read after the locks are held (a fresh snapshot): a manual run committed while this claim
    // waited is seen, so the due time becomes SKIPPED instead of clashing with it.
    const running = await tx<{ jobId: string }[]>`
      select job_id from job_runs where status = 'RUNNING' and job_id = any(${tx.array(locked.map((j) => j.id))}::text[])`;
    const busy = new Set(running.map((r) => r.jobId));
    const due: DueJob[] = locked.map((job) => ({ ...job, busy: busy.has(job.id) }));
    const planned = due.map(decide);
    await tx`
      update jobs set next_due_at = v.next_due_at
      from unnest(${tx.array(planned.map((r) => r.jobId))}::text[],
                  ${tx.array(planned.map((r) => r.nextDueAt.toISOString()))}::timestamptz[]) as v(id, next_due_at)
      where jobs.id = v.id`;
    const leaseUntil = new Date(args.now.getTime() + args.leaseMs);
    const runs = await tx<RunRow[]>`
      insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance, missed,
                            lease_token, lease_expires_at)
      -- A SKIPPED due time never started (SPEC §2): no started_at, so it shows no lateness and
      -- no duration; its finished_at is when it was recorded.
      select v.job_id, 'SCHEDULE', v.scheduled_at,
             case when v.status = 'RUNNING' then ${args.now}::timestamptz end,
             case when v.status = 'SKIPPED' then ${args.now}::timestamptz end,
             v.status, ${args.holder.instance}, v.missed,
             case when v.status = 'RUNNING' then ${args.holder.token}::uuid end,
             case when v.status = 'RUNNING' then ${leaseUntil}::timestamptz end
      from unnest(${tx.array(planned.map((r) => r.jobId))}::text[],
                  ${tx.array(planned.map((r) => r.scheduledAt.toISOString()))}::timestamptz[],
                  ${tx.array(planned.map((r) => r.status))}::text[],
                  ${tx.array(planned.map((r) => r.missed))}::int[]) as v(job_id, scheduled_at, status, missed)
      -- Only a repeat of the same due time is ignored (and logged below); any other clash (a
      -- second RUNNING run) fails the claim and rolls back the advance of next_due_at, so no due
      -- time is lost. A job's next_due_at lies after every due time recorded for its id (the
      -- claim and every change keep it so), so a repeat is not expected: it is never silent.
      on conflict (job_id, scheduled_at) where trigger = 'SCHEDULE' do nothing
      returning *`;
    const jobsById = new Map<string, JobRow>(due.map((j) => [j.id, j]));
    const claimed = runs.map((run) => ({ run, job: jobsById.get(run.jobId)!, entries: [] as LogRow[] }));
    const inserted = new Set(runs.map((run) => run.jobId));
    const clashed = planned.filter((p) => !inserted.has(p.jobId)).map(describeClash);
    const entries = await insertLogEntries(tx, [...claimed.flatMap((c) => describe(c.run, c.job)), ...clashed]);
    for (const entry of entries) claimed.find((c) => c.run.id === entry.runId)?.entries.push(entry);
    return { claimed, clashes: entries.filter((entry) => entry.runId === null) };
  });
}

/**
 * Records due times a change of the job leaves behind as one SKIPPED run (trigger SCHEDULE)
 * that never started. Returns null when a run for that due time exists already.
 */
export async function insertSkippedRun(
  sql: Queryable,
  args: { jobId: string; scheduledAt: Date; missed: number; now: Date; instance: string },
): Promise<RunRow | null> {
  const rows = await sql<RunRow[]>`
    insert into job_runs (job_id, trigger, scheduled_at, finished_at, status, instance, missed)
    values (${args.jobId}, 'SCHEDULE', ${args.scheduledAt}, ${args.now}, 'SKIPPED', ${args.instance}, ${args.missed})
    on conflict (job_id, scheduled_at) where trigger = 'SCHEDULE' do nothing
    returning *`;
  return rows[0] ?? null;
}

/** The latest due time a SCHEDULE run of this job id stands for, in epoch ms; null when there is none. */
export async function lastScheduledAt(sql: Queryable, jobId: string): Promise<number | null> {
  const [row] = await sql<{ at: Date | null }[]>`
    select max(scheduled_at) as at from job_runs where job_id = ${jobId} and trigger = 'SCHEDULE'`;
  return row?.at ? row.at.getTime() : null;
}

/** Starts a manual run unless one of the job is in progress. Returns null on conflict. */
export async function insertManualRun(
  sql: Queryable,
  args: { jobId: string; now: Date; holder: Holder; leaseMs: number },
): Promise<RunRow | null> {
  const rows = await sql<RunRow[]>`
    insert into job_runs (job_id, trigger, scheduled_at, started_at, status, instance, lease_token, lease_expires_at)
    values (${args.jobId}, 'MANUAL', ${args.now}, ${args.now}, 'RUNNING', ${args.holder.instance},
            ${args.holder.token}, ${new Date(args.now.getTime() + args.leaseMs)})
    on conflict do nothing
    returning *`;
  return rows[0] ?? null;
}

export interface RunEnd {
  status: EndStatus;
  error: string | null;
  now: Date;
  log?: Pick<LogRow, 'level' | 'message' | 'details'> | undefined;
}

export interface FinishedRun {
  run: RunRow;
  entry: LogRow | null;
  /** This end was committed already, by an earlier try whose reply was lost: the stored row is returned. */
  repeated: boolean;
}

/**
 * Ends a run, fenced by its lease token: refused (null) when the run is no longer held by this
 * token, e.g. it was marked ABANDONED after this process lost its lease. The run's closing log
 * entry is written in the same transaction, so it exists exactly when the end does.
 *
 * A try whose reply was lost may have committed: the run is then no longer RUNNING, and the
 * fence alone would refuse the next try as if the run had been taken away. So a refused end
 * looks at the row: if it holds exactly this end (this token, status, error and finishedAt —
 * an end written by anyone else differs in its error and time), it was this end, committed
 * earlier; the stored row and entry are returned (`repeated`), so its event is still published.
 */
export async function finishRun(sql: Sql, runId: string, token: string, end: RunEnd): Promise<FinishedRun | null> {
  const { log } = end;
  const [written] = await finishRuns(sql, token, [{ ...end, runId }]);
  if (written) return written;
  const [run] = await sql<RunRow[]>`
    select * from job_runs
    where id = ${runId} and lease_token = ${token} and status = ${end.status}
      and finished_at = ${end.now} and error is not distinct from ${end.error}`;
  if (!run) return null;
  const [entry] = log
    ? await sql<LogRow[]>`
        select * from log_entries
        where run_id = ${runId} and at = ${end.now} and level = ${log.level} and message = ${log.message}
        order by id limit 1`
    : [];
  return { run, entry: entry ?? null, repeated: true };
}

/**
 * Ends many runs held by one token in one transaction (one commit for all of them): the first
 * try of each end, so none can have been committed before. Answers, in the order asked, each
 * run's FinishedRun, or null where the fence refused it. A retry after a failure goes through
 * `finishRun`, which recognises an end committed by a try whose reply was lost.
 */
export async function finishRuns(sql: Sql, token: string, ends: (RunEnd & { runId: string })[]): Promise<(FinishedRun | null)[]> {
  if (ends.length === 0) return [];
  const write = async (q: Queryable) => {
    const runs = await q<RunRow[]>`
      update job_runs r set status = v.status, error = v.error, finished_at = v.finished_at
      from unnest(${q.array(ends.map((e) => e.runId))}::bigint[],
                  ${q.array(ends.map((e) => e.status))}::text[],
                  ${q.array(ends.map((e) => e.error) as string[])}::text[],
                  ${q.array(ends.map((e) => e.now.toISOString()))}::timestamptz[]) as v(id, status, error, finished_at)
      where r.id = v.id and r.lease_token = ${token} and r.status = 'RUNNING'
      returning r.*`;
    const byId = new Map(runs.map((run) => [run.id, run]));
    const logged = ends.filter((e) => e.log && byId.has(e.runId));
    const entries = await insertLogEntries(
      q,
      logged.map((e) => ({ at: e.now, ...e.log!, jobId: byId.get(e.runId)!.jobId, runId: e.runId })),
    );
    const entryOf = new Map(entries.map((entry) => [entry.runId, entry]));
    return ends.map((e) => {
      const run = byId.get(e.runId);
      return run ? { run, entry: entryOf.get(e.runId) ?? null, repeated: false } : null;
    });
  };
  // Successes write no entries: one statement, no transaction round trips.
  return ends.some((e) => e.log) ? sql.begin(write) : write(sql);
}

/**
 * Renews the leases of the runs this process is executing. Returns, per run it still holds,
 * whether a cancel was requested; a run missing from the answer is no longer held.
 */
export async function renewLeases(sql: Queryable, token: string, runIds: string[], until: Date): Promise<Map<string, boolean>> {
  if (runIds.length === 0) return new Map();
  const rows = await sql<{ id: string; cancelRequested: boolean }[]>`
    update job_runs set lease_expires_at = ${until}
    where id = any(${sql.array(runIds)}::bigint[]) and lease_token = ${token} and status = 'RUNNING'
    returning id, cancel_requested_at is not null as cancel_requested`;
  return new Map(rows.map((r) => [r.id, r.cancelRequested]));
}

/** Asks whichever instance holds a running run to cancel it. */
export async function requestCancel(sql: Queryable, runId: string, now: Date): Promise<RunRow | null> {
  const rows = await sql<RunRow[]>`
    update job_runs set cancel_requested_at = coalesce(cancel_requested_at, ${now})
    where id = ${runId} and status = 'RUNNING'
    returning *`;
  return rows[0] ?? null;
}

/**
 * Ends a job's run in progress as CANCELLED, without its holder (used when the job is deleted).
 * The holder's later writes are then refused by the lease fence, which requires RUNNING.
 */
export async function cancelRunsOfJob(sql: Queryable, args: { jobId: string; now: Date; error: string }): Promise<RunRow[]> {
  return sql<RunRow[]>`
    update job_runs set status = 'CANCELLED', finished_at = ${args.now}, error = ${args.error}
    where job_id = ${args.jobId} and status = 'RUNNING'
    returning *`;
}

export interface AbandonedRun extends RunRow {
  externalCall: string | null;
}

/**
 * Marks ABANDONED every run whose lease expired (its process died or froze) — or, with
 * `exceptToken`, every running run not held by that token, used when this process owns the
 * database alone and so knows all other holders are dead — or, with `heldBy`, the given runs
 * still held by that token (runs its holder claimed but never launched).
 */
export async function abandonRuns(
  sql: Queryable,
  args: { now: Date; error: string } & ({ expiredBefore: Date } | { exceptToken: string } | { heldBy: string; runIds: string[] }),
): Promise<AbandonedRun[]> {
  const condition =
    'expiredBefore' in args
      ? sql`lease_expires_at < ${args.expiredBefore}`
      : 'exceptToken' in args
        ? sql`lease_token is distinct from ${args.exceptToken}::uuid`
        : sql`lease_token = ${args.heldBy}::uuid and id = any(${sql.array(args.runIds)}::bigint[])`;
  return sql<AbandonedRun[]>`
    update job_runs set status = 'ABANDONED', finished_at = ${args.now}, error = ${args.error}
    where status = 'RUNNING' and ${condition}
    returning job_runs.*, (select j.connector_id || ':' || j.method from jobs j where j.id = job_runs.job_id) as external_call`;
}

/** The ids of the runs in progress under this lease token. */
export async function runningUnder(sql: Queryable, token: string): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`select id from job_runs where status = 'RUNNING' and lease_token = ${token}::uuid`;
  return rows.map((r) => r.id);
}

export async function findRun(sql: Queryable, id: string): Promise<RunRow | null> {
  if (!/^\d{1,18}$/.test(id)) return null;
  const rows = await sql<RunRow[]>`select * from job_runs where id = ${id}`;
  return rows[0] ?? null;
}

/** The rows of these runs (those that exist). */
export async function findRuns(sql: Queryable, ids: string[]): Promise<RunRow[]> {
  if (ids.length === 0) return [];
  return sql<RunRow[]>`select * from job_runs where id = any(${sql.array(ids)}::bigint[])`;
}

export interface RunPageArgs {
  jobId?: string | null;
  status?: RunStatus | null;
  first: number;
  after?: { at: Date; id: string } | null;
}

/**
 * Each job's latest run (by due time, then id), for many jobs in one statement: one index probe of
 * job_runs_job_page_idx per job, however long its history. Jobs without runs have no row.
 */
export async function lastRunsOf(sql: Queryable, jobIds: readonly string[]): Promise<RunRow[]> {
  if (jobIds.length === 0) return [];
  return sql<RunRow[]>`
    select r.* from unnest(${sql.array([...jobIds])}::text[]) as k(job_id)
    cross join lateral (
      select * from job_runs where job_runs.job_id = k.job_id order by scheduled_at desc nulls last, id desc nulls last limit 1
    ) r`;
}

/**
 * One page of runs (newest first by due time, then id; one extra to tell whether a next page
 * exists) for each of many jobs, in one statement: each job's page is an index range of
 * job_runs_job_page_idx.
 */
export async function pageRunsOfJobs(
  sql: Queryable,
  jobIds: readonly string[],
  args: { first: number; after?: { at: Date; id: string } | null },
): Promise<RunRow[]> {
  if (jobIds.length === 0) return [];
  return sql<RunRow[]>`
    select r.* from unnest(${sql.array([...jobIds])}::text[]) as k(job_id)
    cross join lateral (
      select * from job_runs
      where job_runs.job_id = k.job_id
        ${args.after ? sql`and (scheduled_at, id) < (${args.after.at}, ${args.after.id})` : sql``}
      order by scheduled_at desc nulls last, id desc nulls last
      limit ${args.first + 1}
    ) r`;
}

/** The latest due time a SCHEDULE run stands for, per job id of many (epoch ms); ids without one are absent. */
export async function lastScheduledAtOf(sql: Queryable, jobIds: readonly string[]): Promise<Map<string, number>> {
  if (jobIds.length === 0) return new Map();
  // A max() per id: one backward probe of job_runs_due_key each, however many runs the id has.
  const rows = await sql<{ jobId: string; at: Date | null }[]>`
    select k.job_id, (select max(scheduled_at) from job_runs r where r.job_id = k.job_id and r.trigger = 'SCHEDULE') as at
    from unnest(${sql.array([...jobIds])}::text[]) as k(job_id)`;
  return new Map(rows.filter((row) => row.at !== null).map((row) => [row.jobId, row.at!.getTime()]));
}

/**
 * Runs newest first by due time, then id (one page, and one extra row to tell whether a next page
 * exists), read in the order of job_runs_page_idx, or job_runs_job_page_idx for one job: a page
 * costs its rows, not a sort of the whole table. The order says NULLS LAST because the indexes
 * do: `desc` alone means NULLS FIRST, which no index has (the columns are never null, but the
 * planner does not look at that), with which a page sorted the whole table.
 */
export async function pageRuns(sql: Queryable, args: RunPageArgs): Promise<RunRow[]> {
  return sql<RunRow[]>`
    select * from job_runs
    where true
      ${args.jobId != null ? sql`and job_id = ${args.jobId}` : sql``}
      ${args.status != null ? sql`and status = ${args.status}` : sql``}
      ${args.after ? sql`and (scheduled_at, id) < (${args.after.at}, ${args.after.id})` : sql``}
    order by scheduled_at desc nulls last, id desc nulls last
    limit ${args.first + 1}`;
}
